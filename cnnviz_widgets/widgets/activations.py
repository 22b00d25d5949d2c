"""FeatureMaps: every channel of a layer for one image."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import traitlets
from torch import nn

from .. import export, render
from ..inspect import (
    capture,
    spatial_layer,
    spatial_layers,
)
from ..inspect.inputs import model_image
from ..inspect.kinds import POST_ACTIVATION
from ..inspect.layers import default_layer
from ..inspect.predict import bound_model
from ..inspect.wrappers import unwrap
from ._codec import Array
from ._derived import catalogue_of
from ._layers import layer_choices
from ._owner import owner_of
from ._tiles import TileGridWidget, bundle


class FeatureMaps(TileGridWidget):
    """All channels of one layer's output for one image, as a grid of tiles.

    `image`: a PIL image (with `transform`; without one it is read into [0, 1] by its mode, see
    `cnnviz_widgets.inspect.inputs`), or a CHW/NCHW tensor in the model's input space.
    `layer`: a module or its name (default: `inspect.layers.default_layer`, the deepest
    post-activation map whose receptive field fits the image). `kind` says what the layer's
    maps are (`inspect.kinds`); `scale="auto"` draws a post-activation map from 0 (black,
    silent) to its maximum and a linear or gated map centred at 0 ("signed"; with
    `colormap="auto"` in the diverging coolwarm, blue < 0 < red). `normalize` is "layer" (one
    scale for all tiles, so strong and weak channels compare) or "channel". `layer`, `image`,
    `colormap`, `scale` and `normalize` can be changed after creation; a click on a tile sets
    `selected_channel` (-1: none; a channel the layer lacks is refused); `sort_by` orders the
    tiles by "index", "mean" or "max" activation. `forward_args`: the model's further inputs
    after the image, held fixed.
    """

    _esm = bundle("feature_maps.js")

    layer = traitlets.Unicode("").tag(sync=True)
    image = traitlets.Any(allow_none=False)
    colormap = traitlets.Enum(["auto", *render.COLORMAPS], "auto").tag(sync=True)
    scale = traitlets.Enum(["auto", *render.SCALES], "auto").tag(sync=True)
    kind = traitlets.Unicode("").tag(sync=True)
    normalize = traitlets.Enum(["layer", "channel"], "layer").tag(sync=True)
    sort_by = traitlets.Enum(["index", "mean", "max"], "index").tag(sync=True)
    selected_channel = traitlets.Int(-1).tag(sync=True)
    channel_max = Array("float32")
    channel_mean = Array("float32")
    input_png = traitlets.Bytes(b"").tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        image,
        layer: str | nn.Module | None = None,
        *,
        transform: Callable | None = None,
        device=None,
        tile_px: int = 64,
        forward_args: Sequence = (),
        **kwargs,
    ):
        model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
        model = bound_model(model, forward_args)  # the image alone in
        self._model = model
        self._transform = transform
        self._device = device
        self.activations: np.ndarray | None = None
        batch = self._batch(image)
        self._catalogue = catalogue_of(model, batch, device=device)
        if layer is None:
            layer = default_layer(model, layer_choices(model, batch[0]))
        name, _ = spatial_layer(model, layer, self._catalogue)
        super().__init__(image=image, layer=name, tile_px=tile_px, **kwargs)
        self._refresh()
        self.observe(self._refresh, names=["layer", "image", "colormap", "scale", "normalize"])

    @property
    def layer_options(self) -> list[str]:
        """Layers with a (C, H, W) output: the choices for `layer`."""
        return spatial_layers(self._catalogue)

    def _batch(self, image):
        return model_image(self._model, image, self._transform)

    @traitlets.validate("layer")
    def _valid_layer(self, proposal):
        return spatial_layer(self._model, proposal["value"], self._catalogue)[0]

    @traitlets.validate("image")
    def _valid_image(self, proposal):
        self._batch(proposal["value"])
        return proposal["value"]

    @traitlets.validate("selected_channel")
    def _valid_channel(self, proposal):
        return check_channel(proposal["value"], self.activations, self.layer)

    def _refresh(self, change=None) -> None:
        batch = self._batch(self.image)
        with owner_of(self._model).interactive():  # the model's background work waits
            out = capture(self._model, batch, self.layer, device=self._device, transform=None)
        maps = out[self.layer][0].float().numpy()
        self.activations = maps
        c, h, w = maps.shape
        kind = self._info().kind
        scale, colormap = self.drawn_as(kind)
        tiles = render.feature_tiles(maps, normalize=self.normalize, colormap=colormap, scale=scale)
        with self.hold_sync():
            self.kind = kind
            self.channel_max = maps.max(axis=(1, 2))
            self.channel_mean = maps.mean(axis=(1, 2))
            self.input_png = render.png_bytes(render.display_image(batch[0].float().numpy()))
            if self.selected_channel >= c:
                self.selected_channel = -1
            self.caption = (
                f"{self.layer} · {c} channels · {h}×{w} · {_kind_note(kind, maps, scale, colormap)}"
            )
            self._show_tiles(tiles)

    def _info(self):
        return next(i for i in self._catalogue if i.name == self.layer)

    def drawn_as(self, kind: str) -> tuple[str, str]:
        """(scale, colormap) the tiles of a layer of `kind` are drawn with."""
        post = kind == POST_ACTIVATION
        scale = self.scale if self.scale != "auto" else ("zero" if post else "signed")
        auto = "coolwarm" if scale == "signed" else "gray"
        return scale, auto if self.colormap == "auto" else self.colormap

    def _png_image(self) -> np.ndarray:
        """The tiles as shown: in `sort_by` order, about `tile_px` each."""
        return export.tile_grid_image(self, export.feature_maps_order(self))


def check_channel(c: int, maps: np.ndarray | None, layer: str) -> int:
    """`c` where it is -1 (none) or a channel of `maps` (C, ...) of `layer` (anything while
    there are no maps yet), else a TraitError naming the valid range."""
    if maps is None or -1 <= c < len(maps):
        return c
    raise traitlets.TraitError(
        f"selected_channel {c} is out of range: layer {layer!r} has channels 0..{len(maps) - 1}"
        " (-1: none)"
    )


def _kind_note(kind: str, maps: np.ndarray, scale: str, colormap: str) -> str:
    """`post-activation, 53% silent (≤ 0)` or `linear, 0 at the centre (blue < 0 < red)`."""
    note = kind
    if kind == POST_ACTIVATION:
        note += f", {round(100 * float((maps <= 0).mean()))}% silent (≤ 0)"
    if scale == "signed":
        note += ", 0 at the centre" + (" (blue < 0 < red)" if colormap == "coolwarm" else "")
    return note
