"""TopPatches: for each channel, the dataset patches that drive it hardest."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import traitlets
from torch import nn

from .. import export, render
from ..batch.store import as_store
from ..inspect import resolve_layer
from ..inspect.dataset import (
    TopActivations,
    check_dataset,
    check_labels,
    checked_classes,
    top_activations,
    top_job,
)
from ..inspect.effective import SHARE, EffectiveBox, NotDifferentiable, check_share
from ..inspect.inputs import as_index, check_positive
from ..inspect.layers import default_layer
from ..inspect.predict import bound_model
from ..inspect.receptive import receptive_fields
from ..inspect.wrappers import unwrap
from ._codec import Array
from ._derived import fields_of
from ._job import JobWidget
from ._layers import layer_choices
from ._progress import pass_batch_size
from ._tiles import TileGridWidget, bundle
from .activations import check_channel


class TopPatches(TileGridWidget, JobWidget):
    """Per channel of `layer`, the `k` dataset patches it responds to most.

    `crop="effective"` (default) shows each patch as the part of the unit's geometric field its
    input gradient says it used on that image (`inspect.effective`: the box holding `share` of
    the gradient mass), fitted into one tile size; `crop="field"` shows the geometric field
    with that box framed in magenta. The boxes of the page in view are computed when it is
    shown, on the model's background thread (inline with `background=False`), and cached.

    One pass over `dataset` ranks every channel (cached per layer), its progress in the view;
    it runs on the model's background thread and the widget returns at once (`wait()` blocks
    until the page is shown; `top` is None until then; `background=False` ranks before
    returning).
    Channels are shown a page at a time, ordered by `sort_by` ("index", "max": the top
    activation, or "mean" of the top k). A click on a patch sets `selected_index` (its image)
    and `selected_channel`; setting `selected_channel` from Python turns to its page. Link
    `layer` and `selected_channel` with a FeatureMaps to see the top patches of a clicked
    feature map.

    `classes` name the labels (a list, or a dict {index: name}; string labels are mapped to
    their index in it, see `inspect.dataset.read_labels`); `forward_args`: the model's further
    inputs after the image, held fixed. `store`: a batch job's store (its folder, or
    `open_store`'s result; see `cnnviz_widgets.batch`), checked against the model and the
    dataset: the layers it ranked are read from it, not computed.
    """

    _esm = bundle("top_patches.js")

    layer = traitlets.Unicode("").tag(sync=True)
    layer_options = traitlets.List(traitlets.Dict()).tag(sync=True)
    k = traitlets.Int(9).tag(sync=True)
    #: the page's channels (C), and each one's top k activations, images and labels (C, k)
    channels = Array("int32")
    values = Array("float32", 2)
    indices = Array("int32", 2)
    labels = Array("int32", 2)
    class_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    n_pages = traitlets.Int(1).tag(sync=True)
    channels_per_page = traitlets.Int(8).tag(sync=True)
    sort_by = traitlets.Enum(["index", "max", "mean"], "index").tag(sync=True)
    selected_channel = traitlets.Int(-1).tag(sync=True)
    selected_index = traitlets.Int(-1).tag(sync=True)
    crop = traitlets.Enum(["effective", "field"], "effective").tag(sync=True)
    _unfinished = "the top patches were not shown"

    def __init__(
        self,
        model: nn.Module,
        dataset,
        layer: str | nn.Module | None = None,
        k: int = 9,
        *,
        crop: str = "effective",
        share: float = SHARE,
        classes: Sequence[str] | None = None,
        channels_per_page: int = 8,
        max_patch_px: int = 64,
        batch_size: int | None = None,
        device=None,
        display: Callable[[int], np.ndarray] | None = None,
        progress: bool = True,
        tile_px: int = 48,
        start: bool = True,
        background: bool = True,
        forward_args: Sequence = (),
        store=None,
        **kwargs,
    ):
        check_dataset(dataset, "TopPatches")
        #: the batch job's store the rankings are read from (`batch.as_store`), or None
        self.store = as_store(store, model, dataset, display)
        model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
        model = bound_model(model, forward_args)  # the image alone in
        check_positive("channels_per_page", channels_per_page)
        check_positive("max_patch_px", max_patch_px)
        if crop not in ("effective", "field"):
            raise ValueError(f"crop must be 'effective' or 'field'; got {crop!r}")
        #: the share of each unit's gradient mass its effective box holds
        self.share = check_share(share)
        names = checked_classes(classes, dataset, "TopPatches")
        self._model = model
        self._dataset = dataset
        self._options = {
            "batch_size": pass_batch_size(model, device, batch_size),
            "device": device,
            "display": display,
            "progress": progress,
            "classes": names or None,
        }
        self.max_patch_px = max_patch_px
        #: the ranking of the current layer (None until the first background pass is done)
        self.top: TopActivations | None = None
        self._use_model(model, "top patches", background)
        self._crops = self._owner.lane("top patches: effective fields")
        self._cannot: tuple[TopActivations, str] | None = None  # (ranking, why no gradient)
        self._ranked = False
        example = dataset[0][0]
        if layer is None:  # the deepest post-activation map whose field fits the image
            layer = default_layer(model, layer_choices(model, example))
        name = resolve_layer(model, layer)[0]
        # what the pass would refuse, refused now: k, an empty dataset, a layer with no field
        top_job(model, dataset, [name], as_index("k", k), display=display, cache=False)
        if name not in fields_of(model, example):  # no field: the analysis says why
            receptive_fields(model, tuple(example.shape[-2:]), [name], channels=example.shape[-3])
        super().__init__(
            layer=name,
            k=as_index("k", k),
            class_names=[str(c) for c in names],
            channels_per_page=channels_per_page,
            tile_px=tile_px,
            crop=crop,
            layer_options=layer_choices(model, example),
            **kwargs,
        )
        if start:  # else whoever fills the cache calls `_rank()` (CNNExplorer's one pass)
            self._rank()
        else:
            self._begin(status=f"ranking {self.layer}…")
        self.observe(self._on_layer, names=["layer", "k"])
        self.observe(self._show_page, names=["page", "sort_by", "channels_per_page", "crop"])
        self.observe(self._turn_to_channel, names=["selected_channel"])

    @traitlets.validate("layer")
    def _valid_layer(self, proposal):
        return resolve_layer(self._model, proposal["value"])[0]

    @traitlets.validate("selected_channel")
    def _valid_channel(self, proposal):
        top = self.top if self.top is not None and self.top.layer == self.layer else None
        return check_channel(proposal["value"], None if top is None else top.values, self.layer)

    @traitlets.validate("k", "channels_per_page")
    def _valid_count(self, proposal):
        name, value = proposal["trait"].name, proposal["value"]
        if not self._ranked:  # being built: checked above, before any work
            return value
        n = len(self._dataset) if name == "k" else None  # each image counts once per channel
        try:
            return check_positive(name, value, n)
        except ValueError as err:
            raise traitlets.TraitError(str(err)) from err

    def _rank(self, page: int | None = None, *, interactive: bool = False) -> None:
        """Rank the current layer in the background (a cached pass), then show `page`
        (default: the same one). The widget shows the pass's progress; `wait()` blocks.
        `interactive`: before the model's background work (a ranking read from the cache)."""
        self._ranked = True
        self._begin(status=f"ranking {self.layer}…")
        layer, k = self.layer, self.k

        def work(ticket, post) -> None:
            options = {**self._options, "progress": self._pass_progress(ticket, post)}
            if self.store is not None and self.store.has_top(layer, k):  # the batch job's
                top = self.store.top(layer, k)
            else:
                top = top_activations(self._model, self._dataset, [layer], k, **options)[layer]
            if self.class_names:  # the labels shown, read in the pass: no second one
                check_labels(top.labels, len(self.class_names), top.indices)
            post(lambda: self._show_ranking(top, k, page))

        self._submit_job(
            lambda ticket: self._guarded(ticket, lambda post: work(ticket, post)),
            interactive=interactive,
        )

    def _show_ranking(self, top: TopActivations, k: int, page: int | None) -> None:
        self.top = top
        with self.hold_sync():
            self.running, self.progress = False, 1.0
            self.status = self._ranked_status(top)
            self.n_pages = -(-top.channels // self.channels_per_page)
            if self.selected_channel >= top.channels:
                self.selected_channel = -1
            page = min(self.page if page is None else page, self.n_pages - 1)
            if page != self.page:
                self.page = page  # the observer shows it
            else:
                self._show_page()

    def _show_progress(self, fraction: float, text: str) -> None:
        super()._show_progress(fraction, f"ranking {self.layer}: {text}")

    def _ranked_status(self, top: TopActivations) -> str:
        return f"{top.channels} channels · top {top.k} of {len(self._dataset)}"

    def _on_layer(self, change) -> None:
        self._rank(page=0)

    def channel_order(self) -> np.ndarray:
        """All channels in display order (ties by channel index)."""
        values = self.top.values
        if self.sort_by == "index":
            return np.arange(values.shape[0])
        key = values[:, 0] if self.sort_by == "max" else values.mean(axis=1)
        return np.lexsort((np.arange(len(key)), -key))

    def page_channels(self) -> np.ndarray:
        """The channels on the current page."""
        start = self.page * self.channels_per_page
        return self.channel_order()[start : start + self.channels_per_page]

    def _turn_to_channel(self, change) -> None:
        c = change["new"]
        if self.top is None or not 0 <= c < self.top.channels or c in self.page_channels():
            return
        position = int(np.flatnonzero(self.channel_order() == c)[0])
        self.page = position // self.channels_per_page

    def _show_page(self, change=None) -> None:
        if self.top is None:  # not ranked yet: the pass shows the page when it is done
            return
        top, rows = self.top, self.page_channels()
        entries = [(int(c), r) for c in rows for r in range(top.k)]
        boxes = None  # until the page's effective boxes are in (if ever): its field crops
        if self._why_not(top):
            pass  # the model has no input gradient there: `status` says why
        elif not top.missing_effective(entries, self.share):
            boxes = top.effective_boxes(None, entries, share=self.share)
        elif self._background:  # on the model's thread: it shows the page again when done
            self._find_fields(top, entries)
        else:
            device = self._options["device"]
            try:
                boxes = top.effective_boxes(self._model, entries, share=self.share, device=device)
            except NotDifferentiable as err:
                self._cannot = (top, str(err))
        tiles = self._page_tiles(top, entries, boxes)
        with self.hold_sync():
            self.channels = rows
            self.values = top.values[rows]
            self.indices = top.indices[rows]
            self.labels = top.labels[rows]
            self.caption = self._caption(top, boxes)
            if boxes is not None:
                self.status = self._ranked_status(top)
            elif self._why_not(top):
                self.status = (
                    f"{self._ranked_status(top)} · no effective field: {self._why_not(top)}"
                )
            self._show_tiles(tiles, cols=top.k)

    def _find_fields(self, top: TopActivations, entries: list[tuple[int, int]]) -> None:
        """Compute the page's effective boxes on the model's thread, then show the page."""
        self.status = f"{self._ranked_status(top)} · effective fields of page {self.page + 1}…"
        model, share, device = self._model, self.share, self._options["device"]

        def work(post) -> None:
            try:
                top.effective_boxes(model, entries, share=share, device=device)
            except NotDifferentiable as err:  # the geometric crops stay, `status` says why
                why = str(err)
                post(lambda: self._no_gradient(top, why))
                return
            post(lambda: self._show_page() if self.top is top else None)

        # an error says so in `status`; `running` is the ranking's
        self._crops.submit(lambda t: self._guarded(t, work, ends_run=False), interactive=True)

    def _no_gradient(self, top: TopActivations, why: str) -> None:
        self._cannot = (top, why)
        if self.top is top:
            self._show_page()

    def _page_tiles(self, top: TopActivations, entries, boxes: list | None) -> np.ndarray:
        """Effective crops fitted into the field's tile size, or field crops with the
        effective box framed (without `boxes`: the field crops alone)."""
        if boxes is None:
            return render.fit_tiles([top.patch(c, r) for c, r in entries], self.max_patch_px)
        if self.crop == "effective":
            shape = render.fit_shape(*top.field.size, self.max_patch_px)
            crops = [top.patch(c, r, crop="effective", share=self.share) for c, r in entries]
            return render.fit_into(crops, shape)
        tiles = render.fit_tiles([top.patch(c, r) for c, r in entries], self.max_patch_px)
        sy, sx = tiles.shape[1] / top.field.size[0], tiles.shape[2] / top.field.size[1]
        frames = []
        for (c, r), found in zip(entries, boxes, strict=True):
            fy, _, fx, _ = top.box(c, r)
            y0, y1, x0, x1 = found.box
            frames.append(
                (round((y0 - fy) * sy), round((y1 - fy) * sy), round((x0 - fx) * sx),
                 round((x1 - fx) * sx))
            )  # fmt: skip
        return render.frame_tiles(tiles, frames)

    def _caption(self, top: TopActivations, boxes: list[EffectiveBox] | None) -> str:
        effective = f"effective field ({self.share:.0%} of gradient)"
        field = top.field.describe()
        if boxes is None:
            why = "no effective field (no input gradient)" if self._why_not(top) else None
            shown = f"{field} · {why or f'finding the {effective}…'}"
        elif self.crop == "effective":
            shown = f"{effective} within {field}"
        else:
            shown = f"{field} · framed: {effective}"
        dead = sum(b.fallback for b in boxes or ())
        if dead:
            shown += f" · {dead} with zero gradient show the field"
        return (
            f"{top.layer} · {top.channels} channels · patches {shown} "
            f"· page {self.page + 1}/{self.n_pages}"
        )

    def _why_not(self, top: TopActivations) -> str | None:
        """Why `top`'s layer has no effective fields (no input gradient), or None."""
        return self._cannot[1] if self._cannot is not None and self._cannot[0] is top else None

    def _png_image(self) -> np.ndarray:
        """This page of patches: a row per channel, about `tile_px` each."""
        return export.tile_grid_image(self)
