"""CNNExplorer: the linked dashboard of one model and one dataset, composed of child widgets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import traitlets
from ipywidgets import widget_serialization
from torch import nn

from .. import export, render
from ..batch.store import as_store
from ..inspect import first_conv, resolve_layer
from ..inspect.dataset import check_dataset, class_names, dataset_classes, item_label
from ..inspect.features import shared_pass
from ..inspect.layers import default_layer, kernel_of
from ..inspect.predict import class_probabilities, scored_model
from ..inspect.wrappers import unwrap
from ._base import Widget
from ._layers import layer_choices
from ._owner import owner_of
from ._progress import PassProgress, Superseded, pass_batch_size
from ._tiles import bundle
from .activations import FeatureMaps
from .embedding import EmbeddingExplorer
from .filters import FilterGrid
from .occlusion import OcclusionMap
from .patches import TopPatches


def _child(cls: type) -> traitlets.Instance:
    """A child widget: synced as a reference its view loads with `widget_manager.get_model`."""
    return traitlets.Instance(cls).tag(sync=True, **widget_serialization)


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


def _layer(model: nn.Module, example, store) -> str:
    """The default layer: the deepest post-activation map whose field fits the image
    (`default_layer`), or, with a store that has not ranked it, the last layer it ranked."""
    name = default_layer(model, layer_choices(model, example))
    if store is None or store.has_top(name) or not store.layers:
        return name
    return store.layers[-1]


def _one_pass(tp: TopPatches, closed: Callable[[], bool], **pass_kw):
    """The map's features function: its features and `tp`'s top patches in ONE pass over the
    dataset (`shared_pass(**pass_kw)`; both cached, so `tp` then finds its own). `tp` waits for
    the pass (its lane is held until then) and shows its progress; `closed()`: whether the map
    is closed (then `tp` stops waiting)."""
    ranked = tp._lane.hold()

    def one_pass(report: PassProgress, preview, extra):
        def both(done, total):
            report(done, total)  # raises when superseded
            if total:
                text = f"{done:,} / {total:,}"
                tp._post(lambda: tp._show_progress(done / total, text), report.is_current)

        def run():
            return shared_pass(progress=both, preview=preview, extra=extra, **pass_kw)

        return _ranking(tp, ranked, report.is_current, closed, run)[0]

    return one_pass


#: the selections the explorer shows, by the child view that owns each
OWNED = {
    "selected_index": "embedding",
    "layer": "feature_maps",
    "selected_channel": "feature_maps",
    "target": "occlusion",
}


class CNNExplorer(Widget):
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

    `store`: a batch job's store (its folder, or `open_store`'s result; see
    `cnnviz_widgets.batch`), for a dataset too large for the kernel's pass: the map's features
    and the top patches of the layers it ranked are read from it (memory-mapped) and the
    explorer opens at once; each view checks it was made with this model and this dataset.

    The views are child widgets, the ordinary ones (`explorer.embedding`, `.feature_maps`,
    `.occlusion`, `.top_patches`, `.filters`): their methods and results are there to read.
    Each selection has one owner: the image (`selected_index`) is the map's, the layer and the
    channel (`layer`, `selected_channel`) the feature maps' (the top patches follow them), the
    class (`target`) the occlusion map's; the explorer's properties of those names read and set
    them there.
    """

    _esm = bundle("cnn_explorer.js")

    embedding = _child(EmbeddingExplorer)
    feature_maps = _child(FeatureMaps)
    occlusion = _child(OcclusionMap)
    top_patches = _child(TopPatches)
    filters = _child(FilterGrid)
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
        store=None,
        **kwargs,
    ):
        check_dataset(dataset, "CNNExplorer")
        self._dataset, self._device = dataset, device
        self._check_index(selected_index, ValueError)
        example = self._image(selected_index)
        names = dataset_classes(classes, dataset)
        model, probs = scored_model(
            unwrap(model), example, device=device, forward_args=forward_args,
            class_scores=class_scores,
        )  # fmt: skip  # the image alone in, the class scores alone out: what every view runs
        self._model = model
        model_classes = class_names(model_classes, "model_classes")
        if model_classes is None and len(names) == len(probs):
            model_classes = names
        opened = as_store(store)  # its layers; each view checks it against model and data
        name = (
            resolve_layer(model, layer)[0] if layer is not None else _layer(model, example, opened)
        )
        if top_k is None:  # 9 patches per channel, fewer on a smaller dataset (or store)
            top_k = min(9, len(dataset), opened.k if opened is not None else 9)
        shared = {
            "device": device, "progress": progress, "display": display,
            "batch_size": pass_batch_size(model, device, batch_size), "background": background,
        }  # fmt: skip
        tp = TopPatches(model, dataset, name, top_k, classes=names, start=opened is not None,
                        store=opened, **shared)  # fmt: skip
        features = None if opened is not None else _one_pass(
            tp, lambda: emb._lane.closed, model=model, dataset=dataset, top_layers=[name],
            k=top_k, feature_layer=feature_layer, classes=names or None, display=display,
            device=device, batch_size=shared["batch_size"],
        )  # fmt: skip
        emb = EmbeddingExplorer(
            model, dataset, names or None, model_classes=model_classes, method=method, k=k,
            random_state=random_state, view_px=400, features=features, start=False,
            layer=feature_layer, store=opened, **shared,
        )  # fmt: skip
        if not background:  # the pass first, then the occlusion map: not both on the cores
            emb._submit()
        occ = OcclusionMap(model, example, classes=model_classes, device=device, view_px=224,
                           **(occlusion or {}))  # fmt: skip
        fm = FeatureMaps(model, example, name, device=device, tile_px=40)
        super().__init__(
            embedding=emb, feature_maps=fm, occlusion=occ, top_patches=tp,
            filters=FilterGrid(model, first_conv(model)),
            title=f"{type(model).__name__} · {len(dataset)} images", **kwargs,
        )  # fmt: skip
        self._link(selected_index)
        if background:  # the one dataset pass, on the model's thread: every view exists by now
            emb._submit()

    def _link(self, index: int) -> None:
        """The links between the views: each selection has one owner, the others follow."""
        fm, tp = self.feature_maps, self.top_patches
        for name in ("layer", "selected_channel"):
            traitlets.link((fm, name), (tp, name))
        self._index = index
        self.embedding.selected_index = index
        self.embedding.observe(self._on_index, names=["selected_index"])
        tp.observe(self._from_patch, names=["selected_index"])
        fm.observe(self._show_kernel, names=["selected_channel", "layer"])
        self._show_selection()
        self._show_kernel()

    # ------------------------------------------------------------- the selections, by owner

    @property
    def selected_index(self) -> int:
        """The image shown (the map's selection; it keeps the last one when the map's is
        cleared)."""
        return self._index

    @selected_index.setter
    def selected_index(self, index: int) -> None:
        self._check_index(index)
        self.embedding.selected_index = index

    @property
    def layer(self) -> str:
        """The layer of the feature maps and the top patches."""
        return self.feature_maps.layer

    @layer.setter
    def layer(self, name: str) -> None:
        self.feature_maps.layer = name

    @property
    def selected_channel(self) -> int:
        """The channel whose top patches and kernel are shown (-1: none)."""
        return self.feature_maps.selected_channel

    @selected_channel.setter
    def selected_channel(self, channel: int) -> None:
        self.feature_maps.selected_channel = channel

    @property
    def target(self) -> int:
        """The class of the occlusion map."""
        return self.occlusion.target

    @target.setter
    def target(self, target: int) -> None:
        self.occlusion.target = target

    def observe(self, handler, names=traitlets.All, type="change"):
        """As traitlets' `observe`; the selections the views own (`OWNED`) are observed on their
        owner (the change's "owner" is that view)."""
        self._route("observe", handler, names, type)

    def unobserve(self, handler, names=traitlets.All, type="change"):
        self._route("unobserve", handler, names, type)

    def _route(self, method: str, handler, names, type) -> None:
        names = [names] if isinstance(names, str) else names
        if names is not traitlets.All:
            for name in [n for n in names if n in OWNED]:
                getattr(getattr(self, OWNED[name]), method)(handler, names=[name], type=type)
            names = [n for n in names if n not in OWNED]
        if names:
            getattr(super(), method)(handler, names=names, type=type)

    @property
    def feature_layer(self) -> str:
        """The layer the map's features come from (its input by default: see the caption)."""
        return self.embedding.feature_layer

    def _check_index(self, i: int, error: type[Exception] = traitlets.TraitError) -> None:
        if not 0 <= i < len(self._dataset):
            raise error(f"selected_index {i} is out of range 0..{len(self._dataset) - 1}")

    def _image(self, index: int):
        item = self._dataset[index]
        return item[0] if isinstance(item, tuple | list) else item

    def _from_patch(self, change) -> None:
        if change["new"] >= 0:
            self.embedding.selected_index = change["new"]

    def _on_index(self, change) -> None:
        i = change["new"]
        if i < 0:  # the map's selection cleared: the views keep the last image
            return
        self._index = i
        image = self._image(i)
        with owner_of(self._model).interactive():
            self.feature_maps.image = image
            self.occlusion.image = image  # resets target to the predicted class, starts the run
            self._show_selection()

    def _show_selection(self) -> None:
        i = self._index
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
        c, layer = self.selected_channel, self.layer
        maps = self.feature_maps.activations  # (C, H, W) of `layer`
        found = kernel_of(self._model, layer, maps.shape[0])
        if c < 0 or found is None:
            caption = "click a feature map to see its kernel" if found else "no conv kernel here"
            self._set(kernel_png=b"", kernel_grid=[0, 0], kernel_caption=caption)
            return
        conv_name, conv = found
        weight = conv.weight.detach().float().cpu().numpy()[c : c + 1]
        atlas, grid, n = render.kernel_sheet(weight, max_channels=64)
        _, i, kh, kw = conv.weight.shape
        via = "" if conv_name == layer else f" (made by {conv_name})"
        shown = "" if n >= i or i == 3 else f", first {n} input channels"
        self._set(
            kernel_png=render.png_bytes(atlas),
            kernel_grid=list(grid),
            kernel_caption=f"kernel of channel {c}{via} · {i}×{kh}×{kw}{shown}",
        )

    def to_html(self, path=None, *, title=None) -> str:
        """The explorer as it is now, as one self-contained HTML page that renders without a
        kernel or network (see `cnnviz_widgets.export.to_html`); the views save PNGs with their
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
        """Close the explorer and its views (ending their background work)."""
        for name in ("embedding", "top_patches", "occlusion", "feature_maps", "filters"):
            child = self._trait_values.get(name)  # absent when __init__ raised before it
            if child is not None:
                child.close()
        super().close()
