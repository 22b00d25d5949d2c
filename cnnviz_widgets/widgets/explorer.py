"""CNNExplorer: the linked dashboard of one model and one dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import traitlets
from torch import nn

from .. import export, render
from ..inspect import first_conv, resolve_layer
from ..inspect.dataset import check_dataset, class_names, dataset_classes, item_label
from ..inspect.features import shared_pass
from ..inspect.layers import default_layer, kernel_of
from ..inspect.predict import class_probabilities, scored_model
from ..inspect.wrappers import unwrap
from ._base import Widget
from ._layers import layer_choices
from ._owner import owner_of
from ._panels import PanelHost, detached, host_traits
from ._progress import PassProgress, Superseded, pass_batch_size
from ._tiles import bundle
from .activations import FeatureMaps
from .embedding import EmbeddingExplorer
from .filters import FilterGrid
from .occlusion import OcclusionMap
from .patches import TopPatches

PANELS = {
    "emb": EmbeddingExplorer,
    "fm": FeatureMaps,
    "occ": OcclusionMap,
    "tp": TopPatches,
    "fg": FilterGrid,
}

#: the selections panels share: one host trait each (panel prefix -> panel trait -> host trait)
SHARED = {
    "fm": {"layer": "layer", "selected_channel": "selected_channel"},
    "tp": {"layer": "layer", "selected_channel": "selected_channel"},
    "occ": {"target": "target"},
}

_Host = type("_ExplorerPanels", (Widget,), host_traits(PANELS, SHARED))


def _ranking(tp: TopPatches, release, is_current, closed, run):
    """`run()`, the one pass that fills the top patches' cache; then `tp` ranks from it, or
    shows the pass's error and `release(error)` keeps it for `tp.wait()` to re-raise."""
    try:
        result = run()
    except Superseded:  # the map's next job runs the pass again, unless the map closed
        if closed():
            release(None)
        raise
    except Exception as err:
        status = f"error: {type(err).__name__}: {err}"
        tp._post(lambda: tp._set(running=False, status=status), is_current)
        release(err)
        raise
    tp._post(lambda: tp._rank(interactive=True), is_current)  # the cache just filled
    release(None)
    return result


class CNNExplorer(PanelHost, _Host):
    """One model and one dataset, every view linked.

    The t-SNE (or PCA) map of the dataset; selecting a point (click, arrow keys to walk its
    neighbours, or `selected_index` from Python) shows the image with its top-5 classes, its
    feature maps at `layer`, its occlusion map for `target` (streamed coarse-to-fine) and its
    nearest neighbours. A click on a feature map (`selected_channel`) shows that channel's top
    dataset patches and its kernel; a click on a patch or a neighbour selects that image. The
    first layer's filters have their own tab.

    `classes` name the dataset's labels; `model_classes` the model's outputs when they differ
    (a pretrained ImageNet model on a folder of your own: pass the weights' 1000 category
    names); by default the outputs take `classes` when the counts match, else "class i". Both
    may be a list or a dict {index: name}; string labels are mapped to their index in `classes`
    (see `inspect.dataset.read_labels`).

    `class_scores`: where the class scores are in what the model returns (an int index of a tuple, a
    str key or attribute, a callable; by default a tensor as it is and an object's `.logits`:
    see `inspect.predict.pick_scores`); `forward_args`: the model's further inputs after the
    image, held fixed. The map's features are `feature_layer`'s output (a spatial map
    global-average-pooled), by default the penultimate ones: the input of the model's last
    nn.Linear, or, where it has none (a 1x1-conv classifier before global pooling), of its
    last nn.Conv2d, pooled; `explorer.feature_layer` names the layer, the map's caption says
    which.

    The explorer returns at once: the one pass over the dataset (the map's features and the
    top patches), the map and the occlusion map run on the model's background thread (shared
    by every widget on the model, see `_owner.py`), their progress in the view, and a point can
    be selected meanwhile. `wait()` blocks until all of it is done;
    `background=False` runs the dataset pass before returning.

    The panels are the ordinary widgets (`explorer.embedding`, `.feature_maps`, `.occlusion`,
    `.top_patches`, `.filters`): their methods and results are there to read.
    """

    _esm = bundle("cnn_explorer.js")

    selected_index = traitlets.Int(0).tag(sync=True)
    layer = traitlets.Unicode("").tag(sync=True)
    selected_channel = traitlets.Int(-1).tag(sync=True)
    target = traitlets.Int(0).tag(sync=True)
    tab = traitlets.Enum(["explore", "filters"], "explore").tag(sync=True)
    selected_info = traitlets.Dict().tag(sync=True)
    kernel_png = traitlets.Bytes(b"").tag(sync=True)
    kernel_grid = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    kernel_caption = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        dataset,
        classes: Sequence[str] | None = None,
        *,
        model_classes: Sequence[str] | None = None,
        layer: str | nn.Module | None = None,
        method: str = "tsne",
        selected_index: int = 0,
        k: int = 8,
        top_k: int | None = None,
        batch_size: int | None = None,
        device=None,
        display: Callable[[int], np.ndarray] | None = None,
        progress: bool = True,
        random_state: int = 0,
        occlusion: dict | None = None,
        background: bool = True,
        class_scores=None,
        forward_args: Sequence = (),
        feature_layer: str | nn.Module | None = None,
        **kwargs,
    ):
        model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
        self._model = model
        self._dataset = dataset
        self._device = device
        check_dataset(dataset, "CNNExplorer")
        if not 0 <= selected_index < len(dataset):
            raise ValueError(
                f"selected_index {selected_index} is out of range 0..{len(dataset) - 1}"
            )
        if top_k is None:  # 9 patches per channel, fewer on a smaller dataset
            top_k = min(9, len(dataset))
        example = self._image(selected_index)
        names = dataset_classes(classes, dataset)
        model_classes = class_names(model_classes, "model_classes")
        model, probs = scored_model(
            model, example, device=device, forward_args=forward_args, class_scores=class_scores
        )  # the image alone in, the class scores alone out: what every panel runs
        self._model = model
        choices = layer_choices(model, example)
        name = (
            resolve_layer(model, layer)[0] if layer is not None else default_layer(model, choices)
        )
        batch_size = pass_batch_size(model, device, batch_size)
        shared = {"device": device, "batch_size": batch_size, "progress": progress}

        def one_pass(report: PassProgress, preview, extra):
            """The map's features and the top patches in ONE pass over the dataset (run by
            the map's background job; both cached, so the top patches then find theirs)."""
            emb_current = report.is_current

            def both(done, total):
                report(done, total)  # raises when superseded
                if total:
                    text = f"{done:,} / {total:,}"
                    tp._post(lambda: tp._show_progress(done / total, text), emb_current)

            features, _ = _ranking(
                tp, ranked, emb_current, lambda: emb._lane.closed,
                lambda: shared_pass(
                    model, dataset, [name], top_k, display=display, device=device,
                    batch_size=batch_size, progress=both, preview=preview, extra=extra,
                    feature_layer=feature_layer, classes=names or None,
                ),
            )  # fmt: skip
            return features

        if model_classes is None and len(names) == len(probs):
            model_classes = names
        emb = detached(EmbeddingExplorer)(
            model, dataset, names or None, model_classes=model_classes, method=method, k=k,
            display=display, random_state=random_state, view_px=400, features=one_pass,
            start=False, background=background, layer=feature_layer, **shared,
        )  # fmt: skip
        fm = detached(FeatureMaps)(model, example, name, device=device, tile_px=40)
        tp = detached(TopPatches)(
            model, dataset, name, top_k, classes=names, display=display, start=False,
            background=background,
            **shared,
        )  # fmt: skip
        ranked = tp._lane.hold()  # the top patches wait for the one pass (`one_pass`)
        if not background:  # the pass first, then the occlusion map: not both on the cores
            emb._submit()
        occ = detached(OcclusionMap)(
            model, example, classes=model_classes, device=device, view_px=224, **(occlusion or {})
        )
        fg = detached(FilterGrid)(model, first_conv(model))
        self.embedding, self.feature_maps, self.occlusion = emb, fm, occ
        self.top_patches, self.filters = tp, fg
        super().__init__(
            selected_index=selected_index,
            layer=fm.layer,
            target=occ.target,
            title=f"{type(model).__name__} · {len(dataset)} images",
            **kwargs,
        )
        for prefix, panel in zip(PANELS, (emb, fm, occ, tp, fg), strict=True):
            self._attach(prefix, panel)
        emb.selected_index = selected_index
        self._show_selection()
        if background:  # the one dataset pass, on the model's thread: every panel exists by now
            emb._submit()

        # layer, selected_channel and target: one host trait each, the panels follow (SHARED)
        emb.observe(self._index_from_panel, names=["selected_index"])
        tp.observe(self._index_from_panel, names=["selected_index"])
        self.observe(self._on_index, names=["selected_index"])
        self.observe(self._show_kernel, names=["selected_channel", "layer"])
        self._show_kernel()

    @property
    def feature_layer(self) -> str:
        """The layer the map's features come from (its input by default: see the caption)."""
        return self.embedding.feature_layer

    def _image(self, index: int):
        item = self._dataset[index]
        return item[0] if isinstance(item, tuple | list) else item

    @traitlets.validate("layer", "selected_channel", "target")
    def _valid_shared(self, proposal):
        return self._check_shared(proposal["trait"].name, proposal["value"])

    @traitlets.validate("selected_index")
    def _valid_index(self, proposal):
        i = proposal["value"]
        if not 0 <= i < len(self._dataset):
            raise traitlets.TraitError(
                f"selected_index {i} is out of range 0..{len(self._dataset) - 1}"
            )
        return i

    def _index_from_panel(self, change) -> None:
        if change["new"] >= 0:
            self.selected_index = change["new"]

    def _on_index(self, change) -> None:
        i = change["new"]
        image = self._image(i)
        with owner_of(self._model).interactive(), self.batch():
            self.embedding.selected_index = i
            self.feature_maps.image = image
            self.occlusion.image = image  # resets target to the predicted class, starts the run
            self._show_selection()

    def _show_selection(self) -> None:
        i = self.selected_index
        feats = self.embedding.features  # None while the dataset pass runs
        names, outputs = self.embedding.class_names, self.occlusion.class_names
        if feats is not None:
            label = int(feats.labels[i])
        else:
            item = self._dataset[i]
            raw = item[1] if isinstance(item, tuple | list) and len(item) > 1 else None
            label = item_label(raw, names, i)
        if feats is not None and feats.predictions is not None:
            pred, conf = int(feats.predictions[i]), float(feats.confidences[i])
        else:
            probs = class_probabilities(self._model, self._image(i), device=self._device)
            pred, conf = int(np.argmax(probs)), float(np.max(probs))
        self.selected_info = {
            "index": i,
            "label": label,
            "label_name": names[label] if 0 <= label < len(names) else "",
            "predicted": pred,
            "predicted_name": outputs[pred] if 0 <= pred < len(outputs) else "",
            "confidence": conf,
        }

    def _show_kernel(self, change=None) -> None:
        c = self.selected_channel
        maps = self.feature_maps.activations  # (C, H, W) of `layer`, kept current by the link
        found = kernel_of(self._model, self.layer, maps.shape[0])
        if c < 0 or found is None:
            with self.hold_sync():
                self.kernel_png, self.kernel_grid = b"", [0, 0]
                self.kernel_caption = (
                    "click a feature map to see its kernel" if found else "no conv kernel here"
                )
            return
        conv_name, conv = found
        weight = conv.weight.detach().float().cpu().numpy()[c : c + 1]
        atlas, grid, n = render.kernel_sheet(weight, max_channels=64)
        _, i, kh, kw = conv.weight.shape
        via = "" if conv_name == self.layer else f" (made by {conv_name})"
        shown = "" if n >= i or i == 3 else f", first {n} input channels"
        with self.hold_sync():
            self.kernel_png = render.png_bytes(atlas)
            self.kernel_grid = list(grid)
            self.kernel_caption = f"kernel of channel {c}{via} · {i}×{kh}×{kw}{shown}"

    def to_html(self, path=None, *, title=None) -> str:
        """The explorer as it is now, as one self-contained HTML page that renders without a
        kernel or network (see `cnnviz_widgets.export.to_html`); panels save PNGs with their
        own `save_png` (`explorer.feature_maps.save_png(path)`, ...)."""
        return export.to_html(self, path, title=title or self.title)

    def wait(self, timeout: float | None = 120):
        """Block until the background work is done (the dataset pass, the map, the top
        patches and the current occlusion map); returns the occlusion map. `timeout` applies
        to each in turn. On a closed explorer it returns at once (closing ended the work): the
        occlusion map done before, or None."""
        self.embedding.wait(timeout)
        self.top_patches.wait(timeout)
        return self.occlusion.wait(timeout)

    def close(self) -> None:
        """Close the explorer and end its panels' background work."""
        for name in ("embedding", "top_patches", "occlusion"):
            panel = getattr(self, name, None)  # absent when __init__ raised before it
            if panel is not None:
                panel.close()
        super().close()
