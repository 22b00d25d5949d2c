"""FilterGrid: a conv layer's kernels as tiles."""

from __future__ import annotations

import numpy as np
import traitlets
from torch import nn

from .. import export, render
from ..inspect import first_conv, resolve_layer
from ..inspect.wrappers import unwrap
from ._tiles import TileGridWidget, bundle


class FilterGrid(TileGridWidget):
    """The kernels of a Conv2d layer (the first one by default) as a grid of tiles.

    Kernels with 3 input channels are drawn as RGB tiles and single-channel kernels as grayscale
    tiles, one per filter (mode "filters"); deeper kernels as grayscale tiles (mode "channels"),
    one row per filter and one column per input channel (the first `max_channels`). `normalize` is
    "filter" (each filter min-max scaled on its own) or
    "global" (one scale for the layer). Clicking a tile sets `selected_filter`.
    """

    _esm = bundle("filter_grid.js")

    layer = traitlets.Unicode("").tag(sync=True)
    normalize = traitlets.Enum(["filter", "global"], "filter").tag(sync=True)
    mode = traitlets.Enum(["filters", "channels"], "filters").tag(sync=True)
    n_filters = traitlets.Int(0).tag(sync=True)
    n_channels_shown = traitlets.Int(0).tag(sync=True)
    selected_filter = traitlets.Int(-1).tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        normalize: str = "filter",
        max_filters: int = 64,
        max_channels: int = 16,
        tile_px: int = 48,
        **kwargs,
    ):
        model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
        self._model = model
        self.max_filters = max_filters
        self.max_channels = max_channels
        name = self._conv_name(first_conv(model) if layer is None else layer)
        super().__init__(layer=name, normalize=normalize, tile_px=tile_px, **kwargs)
        self._refresh()
        self.observe(self._refresh, names=["layer", "normalize"])

    @property
    def conv_layers(self) -> list[str]:
        """Names of the model's Conv2d layers (the choices for `layer`)."""
        return [n for n, m in self._model.named_modules() if isinstance(m, nn.Conv2d)]

    def _conv_name(self, layer) -> str:
        name, module = resolve_layer(self._model, layer)
        if not isinstance(module, nn.Conv2d):
            raise ValueError(
                f"Layer {name!r} is a {type(module).__name__}, not a Conv2d; conv layers are: "
                f"{', '.join(self.conv_layers)}"
            )
        return name

    @traitlets.validate("layer")
    def _valid_layer(self, proposal):
        return self._conv_name(proposal["value"])

    @property
    def weight(self):
        """The shown layer's kernels, a float (O, I, kh, kw) NumPy array."""
        _, module = resolve_layer(self._model, self.layer)
        return module.weight.detach().float().cpu().numpy()

    def _refresh(self, change=None) -> None:
        w = self.weight
        o, i, kh, kw = w.shape
        tiles = render.kernel_tiles(
            w,
            normalize=self.normalize,
            max_filters=self.max_filters,
            max_channels=self.max_channels,
        )
        one_per_filter = i in (1, 3)  # an RGB or a single grayscale tile per filter
        shown_f = min(o, self.max_filters)
        shown_c = 1 if one_per_filter else min(i, self.max_channels)
        full = (shown_f, shown_c) == (o, 1 if one_per_filter else i)
        cut = "" if full else f" (showing {shown_f}×{shown_c})"
        with self.hold_sync():
            self.mode = "filters" if one_per_filter else "channels"
            self.n_filters = shown_f
            self.n_channels_shown = shown_c
            if self.selected_filter >= shown_f:
                self.selected_filter = -1
            self.caption = (
                f"{self.layer} · {o} filters {i}×{kh}×{kw}{cut} · {self.normalize} normalisation"
            )
            self._show_tiles(tiles, cols=None if one_per_filter else shown_c)

    def _png_image(self) -> np.ndarray:
        """The tiles as shown: about `tile_px` each, 1-px gaps."""
        return export.tile_grid_image(self)
