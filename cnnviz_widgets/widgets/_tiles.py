"""What every tile-grid widget shares: the bundle lookup and the atlas traits."""

from __future__ import annotations

import pathlib

import numpy as np
import traitlets

from .. import render
from ._base import Widget

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"

_MISSING = """
export default { render({ el }) {
  el.textContent = "cnnviz-widgets: the JavaScript bundle %s was not built. "
    + "Reinstall with `pip install -e .` (it runs npm in js/).";
} };
"""


def bundle(name: str) -> str:
    """The built ES module for a widget (its text), or a stub that says how to build it.

    Text, not a path: anywidget turns a path into a file watcher whose signal keeps a strong
    reference to every widget instance made from the class, so no widget could ever be
    garbage-collected (its model with it)."""
    path = STATIC / name
    return path.read_text(encoding="utf-8") if path.exists() else _MISSING % name


class TileGridWidget(Widget):
    """Base for widgets that show a grid of image tiles sent as one PNG atlas."""

    atlas_png = traitlets.Bytes(b"").tag(sync=True)
    tile_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    grid_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    n_tiles = traitlets.Int(0).tag(sync=True)
    tile_px = traitlets.Int(64).tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)

    def _show_tiles(self, tiles: np.ndarray, cols: int | None = None) -> None:
        """Pack uint8 tiles (N, h, w[, 3]) into the atlas traits in one sync."""
        atlas, grid = render.pack_tiles(tiles, cols)
        with self.hold_sync():
            self.atlas_png = render.png_bytes(atlas)
            self.tile_shape = list(tiles.shape[1:3])
            self.grid_shape = list(grid)
            self.n_tiles = len(tiles)

    def tile(self, index: int) -> np.ndarray:
        """Tile `index` as the browser receives it (decoded from the atlas)."""
        atlas = render.decode_png(self.atlas_png)
        return render.unpack_tile(atlas, index, tuple(self.tile_shape), self.grid_shape[1])
