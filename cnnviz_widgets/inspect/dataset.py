"""One forward pass over a dataset, shared by several consumers: per-channel top-k, features.

>>> topk = TopKConsumer(model, ["layer3", "layer4"], k=9)
>>> feats = FeatureConsumer(model)              # the input of the classifier layer
>>> top, features = dataset_pass(model, dataset, [topk, feats], batch_size=256)

Each batch runs the model once; every consumer sees that batch's captured layer outputs (and
module inputs, for the features). Top-k results keep memory independent of the dataset size:
a running (C, k) state per layer merged with each batch by one `torch.topk` over
(running + batch candidates), with no loop over channels.

Order and ties: the top-k of a channel is sorted by value, descending; at equal value the
lower dataset index comes first, and within one image (``distinct=False``) the lower
position (row-major) first. With ``distinct=True`` (the default) an image counts at most once
per channel, at its best position (the first one, row-major, when several tie).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from . import effective
from .capture import ActivationCapture, LayerRef, resolve_layer
from .effective import SHARE, EffectiveBox, check_share
from .fingerprint import data_fingerprint, weights_fingerprint
from .inputs import model_device
from .items import batch_error, batch_length, read_item
from .predict import bound_model, bound_source, check_scores, pick_scores
from .receptive import ReceptiveField, receptive_fields
from .store import RowStore
from .wrappers import unwrap

ITEMS = "(image, label) pairs whose image is a float tensor (C, H, W)"


@dataclass
class PassInfo:
    """What a consumer learns before the first batch: the data and the input size."""

    model: nn.Module
    dataset: Any
    length: int | None
    image_size: tuple[int, int]
    channels: int


@dataclass
class Batch:
    """One batch as consumers see it; tensors stay on the pass's device."""

    start: int
    indices: torch.Tensor  # (B,) int64 dataset indices
    labels: torch.Tensor | None  # (B,) int64, or None when labels are not integers
    outputs: dict[str, torch.Tensor]  # captured module outputs by layer name
    inputs: dict[str, torch.Tensor]  # captured module inputs by layer name
    logits: Any
    images: torch.Tensor | None = None  # (B, C, H, W) the batch as read (before the device)
    raw_labels: Any = None  # the labels as collated (strings: a list, see `batch_labels`)


class Consumer(Protocol):
    """Anything that reads the captured activations of a dataset pass."""

    outputs: tuple[str, ...]  # layer names whose outputs it reads
    inputs: tuple[str, ...]  # layer names whose (first) inputs it reads

    def begin(self, info: PassInfo) -> None: ...

    def update(self, batch: Batch) -> None: ...

    def result(self) -> Any: ...


# ---------------------------------------------------------------- top-k ----


def topk_lexicographic(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k largest values and their columns, sorted descending; ties: lower column.

    `torch.topk` finds the k-th value; every entry above it is taken, and of the entries equal
    to it the lowest columns fill the rest, so the choice among ties never depends on the
    kernel. Rows are (C, L); returns ((C, k) values, (C, k) int64 columns).
    """
    rows, length = values.shape
    k = min(k, length)
    kth = values.topk(k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = values > kth
    equal = values == kth
    need = k - above.sum(dim=1, keepdim=True)
    if torch.equal(equal.sum(dim=1, keepdim=True), need):
        chosen = above | equal
    else:
        chosen = above | (equal & (equal.cumsum(dim=1, dtype=torch.int32) <= need))
    columns = chosen.nonzero()[:, 1]
    if columns.numel() != rows * k:
        raise ValueError("activations contain NaN; the top-k of a NaN channel is undefined")
    columns = columns.view(rows, k)
    picked = values.gather(1, columns)
    order = picked.sort(dim=1, descending=True, stable=True).indices
    return picked.gather(1, order), columns.gather(1, order)


class RunningTopK:
    """The k strongest (value, dataset index, position, label) of each channel of one layer."""

    def __init__(self, k: int, distinct: bool = True):
        self.k = k
        self.distinct = distinct
        self.values: torch.Tensor | None = None  # (C, m), m <= k, sorted as documented
        self.index: torch.Tensor | None = None
        self.position: torch.Tensor | None = None
        self.label: torch.Tensor | None = None
        self.map_size: tuple[int, int] | None = None

    def update(self, out: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor) -> None:
        """Merge one batch of (B, C, H, W) activations into the running top-k."""
        b, c, h, w = out.shape
        flat = out.detach().flatten(2).float()  # (B, C, HW)
        if self.distinct:
            best, pos = flat.max(dim=2)  # first maximum per image: the lower position
            cand, cand_pos = best.T, pos.T  # (C, B)
            cand_item = torch.arange(b, device=out.device).expand(c, b)
        else:
            cand = flat.permute(1, 0, 2).reshape(c, b * h * w)  # (index, position) order
            cols = torch.arange(b * h * w, device=out.device)
            cand_item, cand_pos = (cols // (h * w)).expand(c, -1), (cols % (h * w)).expand(c, -1)
        if self.values is None:
            self.map_size = (h, w)
            merged, cols = topk_lexicographic(cand, self.k)
            item = cand_item.gather(1, cols)
            self.values, self.position = merged, cand_pos.gather(1, cols)
            self.index, self.label = indices[item], labels[item]
            return
        m = self.values.shape[1]
        merged, cols = topk_lexicographic(torch.cat([self.values, cand], dim=1), self.k)
        new = cols >= m
        j = (cols - m).clamp_(min=0)
        old = cols.clamp(max=m - 1)
        item = cand_item.gather(1, j)
        self.values = merged
        self.position = torch.where(new, cand_pos.gather(1, j), self.position.gather(1, old))
        self.index = torch.where(new, indices[item], self.index.gather(1, old))
        self.label = torch.where(new, labels[item], self.label.gather(1, old))


@dataclass(frozen=True, eq=False)
class TopActivations:
    """Per channel of `layer`, the k dataset units that drive it hardest.

    `values` (C, k) float32 descending; `indices` (C, k) dataset indices; `ys`, `xs` (C, k) the
    unit's row and column in the layer's map; `labels` (C, k) the images' labels (-1 when the
    dataset's labels are not integers). `patch(c, r)` is what unit (ys, xs) sees: its geometric
    field, or the part its input gradient says it used (`effective_boxes`, cached per unit).
    """

    layer: str
    values: np.ndarray
    indices: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    labels: np.ndarray
    field: ReceptiveField
    distinct: bool = True
    dataset: Any = dataclass_field(default=None, repr=False)
    display: Callable[[int], np.ndarray] | None = dataclass_field(default=None, repr=False)
    _effective: dict = dataclass_field(default_factory=dict, init=False, repr=False)

    @property
    def k(self) -> int:
        """How many entries each channel keeps."""
        return self.values.shape[1]

    @property
    def channels(self) -> int:
        """The number of channels of the layer."""
        return self.values.shape[0]

    def box(self, c: int, r: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) in the input seen by channel c's rank-r unit, unclipped."""
        return tuple(int(v) for v in self.field.box(self.ys[c, r], self.xs[c, r]))

    def image(self, c: int, r: int) -> np.ndarray:
        """The displayable uint8 image (HW or HWC) behind channel c's rank-r unit."""
        return display_image(self.dataset, int(self.indices[c, r]), self.display)

    def patch(
        self,
        c: int,
        r: int,
        fill: int = 128,
        *,
        crop: str = "field",
        model: nn.Module | None = None,
        share: float = SHARE,
    ) -> np.ndarray:
        """Channel c's rank-r crop (uint8 HW or HWC): its geometric field (`crop="field"`,
        outside the image `fill`) or its effective box (`"effective"`: see `effective_boxes`)."""
        if crop not in ("field", "effective"):
            raise ValueError(f"crop must be 'effective' or 'field'; got {crop!r}")
        self._check(c, r)
        image = self.image(c, r)
        if tuple(image.shape[:2]) != self.field.input_size:
            raise ValueError(
                f"The displayed image of dataset[{int(self.indices[c, r])}] is "
                f"{image.shape[0]}x{image.shape[1]}, but the model saw "
                f"{self.field.input_size[0]}x{self.field.input_size[1]}; pass display= that "
                "returns the image as the model sees it"
            )
        if crop == "field":
            return crop_with_fill(image, self.box(c, r), fill)
        return crop_with_fill(
            image, self.effective_boxes(model, [(c, r)], share=share)[0].box, fill
        )

    def effective_boxes(
        self,
        model: nn.Module | None,
        entries: Iterable[tuple[int, int]],
        *,
        share: float = SHARE,
        device: str | torch.device | None = None,
    ) -> list[EffectiveBox]:
        """The effective box (`inspect.effective`) of channel c's rank-r unit per (c, r) of
        `entries`, on `dataset[index][0]` with `model` (the one ranked); cached per unit.

        `model=None` reads the cache only. The boxes missing are computed together, in
        chunks (`effective.CHUNK`), on `device` (default: the GPU when there is one)."""
        share = check_share(share)
        keys = [(share, *self._check(c, r)) for c, r in entries]
        todo = list(dict.fromkeys(key for key in keys if key not in self._effective))
        if todo and model is None:
            _, c, r = todo[0]
            raise ValueError(
                f"The effective box of channel {c}, rank {r} is not computed yet; pass model= "
                "(the model that ranked these units)"
            )
        if todo:
            images = torch.stack([self._tensor(c, r) for _, c, r in todo])
            units = [(c, int(self.ys[c, r]), int(self.xs[c, r])) for _, c, r in todo]
            found = effective.effective_boxes(
                model, self.layer, images, units, self.field, share=share,
                device=pick_device(model, device),
            )  # fmt: skip
            self._effective.update(zip(todo, found, strict=True))
        return [self._effective[key] for key in keys]

    def missing_effective(
        self, entries: Iterable[tuple[int, int]], share: float = SHARE
    ) -> list[tuple[int, int]]:
        """The (c, r) of `entries` whose effective box at `share` is not computed yet."""
        share = check_share(share)
        return [(c, r) for c, r in entries if (share, *self._check(c, r)) not in self._effective]

    def _tensor(self, c: int, r: int) -> torch.Tensor:
        """`dataset[index][0]`, the image tensor the model saw behind channel c's rank-r unit."""
        index = int(self.indices[c, r])
        if self.dataset is None:
            raise ValueError("No dataset to read the image tensors from; rank with a dataset")
        image = read_item(self.dataset, index)[0]
        if not isinstance(image, torch.Tensor) or tuple(image.shape[-2:]) != self.field.input_size:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(
                f"dataset[{index}][0] is {got}, not the (C, {self.field.input_size[0]}, "
                f"{self.field.input_size[1]}) tensor the model saw; give the ranked dataset"
            )
        return image

    def _check(self, c: int, r: int) -> tuple[int, int]:
        if not (0 <= c < self.channels and 0 <= r < self.k):
            raise IndexError(
                f"channel {c}, rank {r} out of range: layer {self.layer!r} has channels "
                f"0..{self.channels - 1} and ranks 0..{self.k - 1}"
            )
        return int(c), int(r)


def crop_with_fill(image: np.ndarray, box: tuple[int, int, int, int], fill: int) -> np.ndarray:
    """`image[y0:y1, x0:x1]` where the box may leave the image; the outside is `fill`."""
    y0, y1, x0, x1 = box
    h, w = image.shape[:2]
    out = np.full((y1 - y0, x1 - x0, *image.shape[2:]), fill, dtype=image.dtype)
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    if cy0 < cy1 and cx0 < cx1:
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = image[cy0:cy1, cx0:cx1]
    return out


def display_image(dataset: Any, index: int, display: Callable | None = None) -> np.ndarray:
    """A uint8 HW/HWC view of dataset[index]: `display(i)`, else `dataset.image(i)`, else scaled.

    Without either, the image tensor is undone with `dataset.denormalize` when the dataset has
    one, taken as is when it lies in [0, 1], and min-max scaled otherwise.
    """
    if display is not None:
        return np.asarray(display(index))
    if callable(getattr(dataset, "image", None)):
        return np.asarray(dataset.image(index))
    if dataset is None:
        raise ValueError("No dataset to show patches from; pass display= (index -> uint8 image)")
    image = read_item(dataset, index)[0]
    if not isinstance(image, torch.Tensor):
        return np.asarray(image)
    return tensor_pixels(image, dataset)


def shows_tensors(dataset: Any, display: Callable | None = None) -> bool:
    """Whether `display_image` shows `dataset`'s images from the tensors the model reads (so
    a pass over the dataset can make them, without reading it again)."""
    return display is None and not callable(getattr(dataset, "image", None))


def tensor_pixels(image: torch.Tensor, dataset: Any = None) -> np.ndarray:
    """`display_image` of one model-input tensor (C, H, W) of `dataset`."""
    image = image.detach().float().cpu()
    if callable(getattr(dataset, "denormalize", None)):
        image = dataset.denormalize(image)
    elif image.min() < 0 or image.max() > 1:
        lo, hi = image.min(), image.max()
        image = (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)


class TopKConsumer:
    """Running per-channel top-k of several layers; `result()` -> {layer: TopActivations}."""

    def __init__(
        self,
        model: nn.Module,
        layers: LayerRef | Sequence[LayerRef],
        k: int = 9,
        *,
        distinct: bool = True,
        display: Callable[[int], np.ndarray] | None = None,
        names: Sequence[str] | None = None,
    ):
        """`names`: the class names string labels are mapped to (see `batch_labels`)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        if not layers:
            raise ValueError("layers is empty; name at least one layer with a feature map")
        self.outputs = tuple(dict.fromkeys(resolve_layer(model, layer)[0] for layer in layers))
        self.inputs: tuple[str, ...] = ()
        self.k = k
        self.distinct = distinct
        self.display = display
        self.names = names
        self.fields: dict[str, ReceptiveField] = {}
        self.dataset: Any = None
        self._state = {name: RunningTopK(k, distinct) for name in self.outputs}

    def begin(self, info: PassInfo) -> None:
        """Check every layer has a receptive field at this input size, before any work."""
        self.dataset = info.dataset
        self._state = {name: RunningTopK(self.k, self.distinct) for name in self.outputs}
        self.fields = receptive_fields(
            info.model, info.image_size, self.outputs, channels=info.channels
        )

    def update(self, batch: Batch) -> None:
        labels = batch_labels(batch, self.names)
        for name, state in self._state.items():
            state.update(batch.outputs[name], batch.indices, labels)

    def result(self) -> dict[str, TopActivations]:
        return {name: self._finish(name, state) for name, state in self._state.items()}

    def _finish(self, name: str, state: RunningTopK) -> TopActivations:
        if state.values is None:
            raise ValueError("The dataset pass saw no batches")
        m = state.values.shape[1]
        if m < self.k:
            what = "images" if self.distinct else "positions (images x map positions)"
            raise ValueError(
                f"k={self.k} is larger than the {m} {what} the dataset gives for layer "
                f"{name!r}; choose k <= {m}"
            )
        w = state.map_size[1]
        position = state.position.cpu().numpy()
        return TopActivations(
            layer=name,
            values=state.values.cpu().numpy().astype(np.float32),
            indices=state.index.cpu().numpy().astype(np.int64),
            ys=position // w,
            xs=position % w,
            labels=state.label.cpu().numpy().astype(np.int64),
            field=self.fields[name],
            distinct=self.distinct,
            dataset=self.dataset,
            display=self.display,
        )


# ------------------------------------------------------------- features ----


@dataclass(frozen=True, eq=False)
class Features:
    """Per image: the features of `layer` and, when the model gives logits, its prediction.

    `labels` are the dataset's labels as class indices (see `read_labels`: whole-number floats
    as integers, one-hot or probability rows by their argmax, strings by their class name),
    -1 where an item has none.

    The arrays are allocated once per pass and filled batch by batch; above
    `store.MEMMAP_BYTES` they are views of a memory-mapped temporary file, which goes when
    they are garbage-collected (see `inspect/store.py`).
    """

    layer: str
    features: np.ndarray  # (N, D)
    labels: np.ndarray  # (N,) int64, -1 when not integers
    predictions: np.ndarray | None  # (N,) int64 argmax of the logits
    confidences: np.ndarray | None  # (N,) float32 softmax probability of the prediction
    from_input: bool = False  # the features are `layer`'s input (the default), not its output
    pooled: bool = False  # a spatial map (C, H, W), global-average-pooled to (C,)

    @property
    def source(self) -> str:
        """Where the features come from, in words: `input of fc`, `conv3, average-pooled`."""
        return feature_source(self.layer, self.from_input, self.pooled)


def classifier_layer(model: nn.Module) -> str:
    """The layer whose input the default features are: the model's last nn.Linear, else,
    where it has none (a 1x1-conv classifier before global pooling: SqueezeNet, some
    MobileNets), its last nn.Conv2d (in registration order)."""
    for kind in (nn.Linear, nn.Conv2d):
        names = [name for name, m in model.named_modules() if isinstance(m, kind)]
        if names:
            return names[-1]
    raise ValueError(
        f"{type(model).__name__} has no nn.Linear or nn.Conv2d, so there are no penultimate "
        "features; name the layer to take features from (layer=, or CNNExplorer's "
        "feature_layer=)"
    )


def features_from(model: nn.Module, layer: LayerRef | None = None) -> tuple[str, bool]:
    """(the layer the features are taken from, whether from its input): `layer`'s output, or,
    with `layer=None`, the input of the model's classifier layer (`classifier_layer`)."""
    model = unwrap(model)  # its names, not a wrapper's (wrappers.py)
    if layer is None:
        return classifier_layer(model), True
    return resolve_layer(model, layer)[0], False


def feature_source(layer: str, from_input: bool, pooled: bool = True) -> str:
    """`input of fc` or `conv3`, with `, average-pooled` where a spatial map is pooled."""
    return f"{'input of ' if from_input else ''}{layer}{', average-pooled' if pooled else ''}"


class PixelConsumer:
    """Every image of the pass as `display_image` shows it, made from the batch the model reads
    (so the dataset is not read again), each batch's list through `shrink` (a thumbnail
    maker: uint8 images -> (B, h, w[, 3])). `result()` -> (N, h, w[, 3]) uint8. Use it only
    where `shows_tensors(dataset, display)`."""

    outputs: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    def __init__(self, shrink: Callable[[list[np.ndarray]], np.ndarray]):
        self._shrink = shrink
        self._parts: list[np.ndarray] = []
        self._dataset = None

    def begin(self, info: PassInfo) -> None:
        self._parts, self._dataset = [], info.dataset

    def update(self, batch: Batch) -> None:
        self._parts.append(self._shrink([tensor_pixels(x, self._dataset) for x in batch.images]))

    def result(self) -> np.ndarray:
        parts, self._parts = self._parts, []
        return np.concatenate(parts)


class FeatureConsumer:
    """Per-image features: the input of the model's classifier layer (`layer=None`: its last
    nn.Linear, else its last nn.Conv2d, see `classifier_layer`) or a layer's output.

    Feature maps (N, C, H, W) are global-average-pooled to (N, C); other shapes are flattened.
    Predictions are the argmax of the class scores `pick_scores(output, class_scores)` finds in what
    the model returns; with `class_scores=None`, none where it finds none (a tuple, a dict).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerRef | None = None,
        *,
        dtype=np.float32,
        preview: Callable[[Callable[[], Features]], None] | None = None,
        class_scores: Any = None,
        names: Sequence[str] | None = None,
    ):
        """`preview(rows)`, if given, is called after each batch; `rows()` returns the
        `Features` of the images seen so far (copies), for a view that fills in as the pass
        goes (it decides how often to look). `names`: the class names string labels are
        mapped to (see `batch_labels`)."""
        self._preview = preview
        self.layer, from_input = features_from(model, layer)
        self.inputs = (self.layer,) if from_input else ()
        self.outputs = () if from_input else (self.layer,)
        self.scores = class_scores
        self.names = names
        self.dtype = np.dtype(dtype)
        self._rows: RowStore | None = None
        self._length: int | None = None
        self._all_logits = True
        self._pooled = False

    def begin(self, info: PassInfo) -> None:
        self._rows, self._length, self._all_logits = None, info.length, True

    def update(self, batch: Batch) -> None:
        x = batch.inputs[self.layer] if self.inputs else batch.outputs[self.layer]
        self._pooled = x.ndim == 4
        x = x.float().mean(dim=(2, 3)) if x.ndim == 4 else x.float().flatten(1)
        labels = batch_labels(batch, self.names)
        row = {"features": x.cpu().numpy(), "labels": labels.cpu().numpy()}
        logits = self._scores(batch)
        if logits is not None:
            conf, pred = logits.float().softmax(dim=1).max(dim=1)
            row["predictions"], row["confidences"] = pred.cpu().numpy(), conf.cpu().numpy()
        else:
            self._all_logits = False
        if self._rows is None:  # the feature width is known now: allocate every row once
            columns = {
                "features": (row["features"].shape[1:], self.dtype),
                "labels": ((), np.int64),
                "predictions": ((), np.int64),
                "confidences": ((), np.float32),
            }
            self._rows = RowStore(columns, self._length)
        if not self._all_logits:  # predictions only when every batch has logits
            row.pop("predictions", None)
            row.pop("confidences", None)
        self._rows.write(batch.start, row)
        if self._preview is not None:
            self._preview(self._so_far)

    def _scores(self, batch: Batch) -> torch.Tensor | None:
        """The batch's (B, num_classes) class scores; None where `class_scores=None` finds none."""
        if self.scores is None:
            try:
                logits = pick_scores(batch.logits)
            except ValueError:
                return None
            return logits if logits.ndim == 2 else None
        logits = pick_scores(batch.logits, self.scores)
        check_scores(logits, self.scores, len(batch.indices))
        return logits

    def _so_far(self) -> Features:
        """The Features of the rows written so far (copies: the pass goes on writing)."""
        arrays = self._rows.head()
        full = self._all_logits
        return Features(
            layer=self.layer,
            features=arrays["features"].astype(np.float32),
            labels=arrays["labels"].copy(),
            predictions=arrays["predictions"].copy() if full else None,
            confidences=arrays["confidences"].copy() if full else None,
            from_input=bool(self.inputs),
            pooled=self._pooled,
        )

    def result(self) -> Features:
        if self._rows is None:
            raise ValueError("The dataset pass saw no batches")
        arrays, self._rows = self._rows.finish(), None
        full = self._all_logits
        return Features(
            layer=self.layer,
            features=arrays["features"],
            labels=arrays["labels"],
            predictions=arrays["predictions"] if full else None,
            confidences=arrays["confidences"] if full else None,
            from_input=bool(self.inputs),
            pooled=self._pooled,
        )


# ------------------------------------------------------------ the pass ----


def pick_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """`device` if given, else the GPU when there is one, else where the model is."""
    if device is not None:
        return torch.device(device)
    home = model_device(model)
    if home.type == "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return home


def dataset_length(data: Dataset | DataLoader) -> int | None:
    """The number of items a pass will see, when the data knows it."""
    dataset = data.dataset if isinstance(data, DataLoader) else data
    try:
        return len(dataset)
    except TypeError:
        return None


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return (
            f"a {type(value).__name__} of {len(value)}: ({', '.join(_describe(v) for v in value)})"
        )
    return f"a {type(value).__module__}.{type(value).__name__}"


def check_item(item: Any, where: str) -> None:
    """Raise a ValueError naming what `where` holds unless it is an (image, label) pair."""
    image = item[0] if isinstance(item, (tuple, list)) and len(item) >= 2 else None
    ok = isinstance(image, torch.Tensor) and image.is_floating_point() and image.ndim == 3
    if ok:
        return
    hint = ""
    if type(image).__module__.startswith("PIL"):
        hint = " Give the dataset a transform, e.g. transforms.ToTensor() and Normalize(...)."
    elif isinstance(image, torch.Tensor) and not image.is_floating_point():
        hint = " Convert the image to float in the model's input space (e.g. x.float() / 255)."
    raise ValueError(f"Dataset items must be {ITEMS}; {where} is {_describe(item)}.{hint}")


def check_dataset(dataset: Any, who: str) -> None:
    """Raise unless `dataset` is a non-empty map-style dataset of (image, label) items, before
    any work: a TypeError for a DataLoader or an iterable dataset, a ValueError otherwise."""
    if isinstance(dataset, DataLoader):
        raise TypeError(
            f"{who} needs a map-style dataset (dataset[i] -> (image, label)), not a DataLoader; "
            f"pass its .dataset (and its batch size as {who}(..., batch_size=...))"
        )
    if isinstance(dataset, IterableDataset) or not (
        hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    ):
        raise TypeError(
            f"{who} needs a map-style dataset (dataset[i] -> (image, label)), not a "
            f"{type(dataset).__name__}: it shows images by index"
        )
    if len(dataset) == 0:
        raise ValueError(f"The dataset is empty: there is nothing for {who} to show")
    check_item(read_item(dataset, 0), "dataset[0]")


def check_labels(labels: Any, n_classes: int, indices: Any = None) -> None:
    """Raise a ValueError naming the first label outside 0..n_classes - 1 (-1, "no integer
    label", passes) and its dataset index (`indices[i]`, or i)."""
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iu":
        return  # not integer labels: nothing to check against class names
    bad = np.flatnonzero((labels < -1) | (labels >= n_classes))
    if len(bad) == 0:
        return
    first = int(bad[0])
    index = int(np.asarray(indices).reshape(-1)[first]) if indices is not None else first
    raise ValueError(
        f"dataset[{index}] has label {int(labels[first])}, but there are {n_classes} class "
        f"names (valid labels: 0..{n_classes - 1}); {len(bad)} of {len(labels)} labels checked "
        "are outside. Pass classes= with a name for every label"
    )


def known_labels(dataset: Any, names: Sequence[str] | None = None) -> np.ndarray | None:
    """`dataset.targets` (torchvision's datasets, ImageFolder) as class indices (`read_labels`,
    strings by `names`), when it has them for every item: labels known without reading the
    images."""
    targets = getattr(dataset, "targets", None)
    if targets is None or isinstance(targets, (str, bytes)):
        return None
    try:
        n = len(dataset)
        labels = read_labels(targets, n, names)
    except (TypeError, ValueError, RuntimeError):
        return None
    return None if labels is None or len(labels) != n else labels.cpu().numpy()


def _strings(raw: Any) -> bool:
    return isinstance(raw, (list, tuple)) and bool(raw) and all(isinstance(v, str) for v in raw)


def read_labels(
    raw: Any, n: int, names: Sequence[str] | None = None, start: int = 0
) -> torch.Tensor | None:
    """(n,) int64 class indices of `n` items' collated labels, None where they are not labels:
    integers as they are; floats that are whole numbers as integers (others are no labels);
    (n, K) rows, one-hot or probabilities, by their argmax; strings by their index in `names`
    (None without names; a ValueError naming an unknown one and its dataset index, counted
    from `start`)."""
    if _strings(raw) and len(raw) == n:
        return None if names is None else _named(raw, names, start)
    if isinstance(raw, (list, tuple, np.ndarray)):
        try:
            raw = torch.as_tensor(np.asarray(raw))
        except (TypeError, ValueError, RuntimeError):
            return None
    if not isinstance(raw, torch.Tensor) or raw.ndim not in (1, 2) or len(raw) != n:
        return None
    if raw.is_complex() or raw.numel() == 0:
        return None
    if raw.ndim == 2:  # one-hot or probability rows (a single column: the label itself)
        raw = raw[:, 0] if raw.shape[1] == 1 else raw.float().argmax(dim=1)
    if raw.is_floating_point() and not bool((raw == raw.round()).all()):
        return None  # not class indices (a regression target)
    return raw.long()


def _named(raw: Sequence[str], names: Sequence[str], start: int) -> torch.Tensor:
    index: dict[str, int] = {}
    for i, name in enumerate(map(str, names)):
        index.setdefault(name, i)  # a name given twice: its first index
    for i, label in enumerate(raw):
        if label not in index:
            known = ", ".join(map(repr, list(index)[:10])) + (", ..." if len(index) > 10 else "")
            raise ValueError(
                f"dataset[{start + i}] has the label {label!r}, which is not a class name "
                f"({known}); pass classes= with a name for every label"
            )
    return torch.tensor([index[label] for label in raw], dtype=torch.int64)


def item_label(raw: Any, names: Sequence[str] | None = None, index: int = 0) -> int:
    """One item's label as a class index (`read_labels`), -1 when it has none."""
    if isinstance(raw, (torch.Tensor, np.ndarray)) and raw.ndim in (0, 1):
        raw = raw.reshape(1, -1) if raw.ndim == 1 else raw.reshape(1)  # a one-hot row: (1, K)
    else:
        raw = [raw]
    found = read_labels(raw, 1, names, index)
    return -1 if found is None else int(found[0])


def batch_labels(batch: Batch, names: Sequence[str] | None = None) -> torch.Tensor:
    """(B,) int64 labels of a pass's batch (see `read_labels`), -1 where it has none; string
    labels by their index in `names` (none without)."""
    found = batch.labels
    if found is None and names and _strings(batch.raw_labels):
        found = _named(batch.raw_labels, names, batch.start).to(batch.indices.device)
    return found if found is not None else torch.full_like(batch.indices, -1)


def string_labels(dataset: Any) -> bool:
    """Whether `dataset[0]`'s label is a string (False where it cannot be read)."""
    try:
        item = read_item(dataset, 0)
    except Exception:
        return False
    return isinstance(item, (tuple, list)) and len(item) > 1 and isinstance(item[1], str)


def class_names(classes: Any, what: str = "classes") -> list[str] | None:
    """`classes` as a list of names: a sequence of names, or a dict {index: name} (a
    Hugging Face `id2label`; index keys may be digit strings, as JSON has them) whose gaps
    are named `class i`. None stays None; a string is a TypeError."""
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)):
        raise TypeError(
            f"{what} must be a list of class names or a dict {{index: name}}; got the string "
            f"{classes[:40]!r}, which would be read as one name per character"
        )
    if not isinstance(classes, Mapping):
        return [str(c) for c in classes]
    found = {}
    for key, name in classes.items():
        ok = isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0
        if not ok and not (isinstance(key, str) and key.isdigit()):
            raise TypeError(
                f"{what} as a dict must map class index -> name; got the key {key!r} (for a "
                "{name: index} dict such as class_to_idx, pass {i: n for n, i in d.items()})"
            )
        found[int(key)] = str(name)
    return [found.get(i, f"class {i}") for i in range(max(found, default=-1) + 1)]


def dataset_classes(classes: Any, dataset: Any) -> list[str]:
    """The names of a dataset's labels: `classes`, else `dataset.classes`, else none."""
    if classes is not None:
        return class_names(classes)
    return class_names(getattr(dataset, "classes", None), "dataset.classes") or []


def check_string_labels(dataset: Any, names: Sequence[str], who: str) -> None:
    """Raise before any work where `dataset`'s labels are strings and there are no `names`
    to map them to (a name unknown to `names` is named by the pass)."""
    if not names and string_labels(dataset):
        label = read_item(dataset, 0)[1]
        raise ValueError(
            f"dataset[0] has the label {label!r}, a string; pass classes= (the class names, in "
            f"the model's output order) so that {who} can map string labels to classes"
        )


def checked_classes(classes: Any, dataset: Any, who: str) -> list[str]:
    """`dataset_classes(classes, dataset)`, checked before any work: string labels have names
    to map to (`check_string_labels`), and the labels `dataset.targets` holds have a name each."""
    names = dataset_classes(classes, dataset)
    check_string_labels(dataset, names, who)
    targets = known_labels(dataset, names)
    if names and targets is not None:
        check_labels(targets, len(names))
    return names


def check_sequential(loader: DataLoader) -> None:
    """Raise unless the loader gives a map-style dataset's items in index order."""
    sampler = loader.sampler
    if not isinstance(loader.dataset, IterableDataset) and not isinstance(
        sampler, SequentialSampler
    ):
        raise ValueError(
            f"The DataLoader draws items with {type(sampler).__name__}, so batch positions "
            "are not dataset indices; pass the dataset itself or a DataLoader with "
            "shuffle=False"
        )


def _loader(data, batch_size: int, num_workers: int, pin: bool) -> DataLoader:
    """A sequential DataLoader over `data` (which may already be one)."""
    if isinstance(data, DataLoader):
        check_sequential(data)
        return data
    if isinstance(data, IterableDataset):  # indices count items in the order it yields them
        return DataLoader(data, batch_size=batch_size, num_workers=num_workers, pin_memory=pin)
    if not isinstance(data, (Dataset, Sequence)) or not hasattr(data, "__getitem__"):
        raise TypeError(
            f"Expected a map-style Dataset of {ITEMS} or a DataLoader; got {type(data).__name__}"
        )
    if len(data) > 0:
        check_item(read_item(data, 0), "dataset[0]")
    return DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin
    )


def _split(batch: Any, start: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, labels as class indices or None: `read_labels`) of one collated batch."""
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
        raise ValueError(
            f"Batches must be {ITEMS}, collated; batch at item {start} is {_describe(batch)}"
        )
    images, labels = batch[0], batch[1]
    if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point()):
        raise ValueError(
            f"Batches must hold float images (N, C, H, W); batch at item {start} holds "
            f"{_describe(images)}"
        )
    return images, read_labels(labels, images.shape[0], start=start)


def _batches(loader: DataLoader, probe: bool = False) -> Iterable[Any]:
    """The loader's batches; a collate error turned into a message about the items, any other
    into a `DatasetItemError` naming the item (`probe`: our own loader, whose batch's items
    are read again one by one to find it) or the batch's index range (`items.batch_error`)."""
    iterator, start = iter(loader), 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            if "stack expects each tensor to be equal size" in str(err):
                raise ValueError(
                    "Images in one batch have different sizes; add a transform that gives them "
                    f"one size (e.g. Resize + CenterCrop). ({err})"
                ) from err
            raise batch_error(err, loader, start, probe) from err
        yield batch
        start += batch_length(batch, loader)


def dataset_pass(
    model: nn.Module,
    data: Dataset | DataLoader,
    consumers: Sequence[Consumer],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | Callable[[int, int | None], None] = True,
    num_workers: int = 0,
    desc: str = "dataset pass",
) -> list[Any]:
    """Run `model` once over `data`, feeding every batch to each consumer; their results.

    `data` is a map-style Dataset of (image, label) items or a DataLoader that does not
    shuffle. An eval-mode view of the model runs in inference mode on `device` (the GPU when
    there is one); the model itself is untouched. A tqdm progress bar shows images/s unless
    `progress=False`; a callable `progress(done, total)` is called after each batch instead (a
    widget's progress bar; an exception it raises, such as a cancellation, ends the pass).
    """
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
    n = dataset_length(data)
    if n == 0:
        raise ValueError("The dataset is empty: there is nothing to pass through the model")
    target = pick_device(model, device)
    loader = _loader(data, batch_size, num_workers, pin=target.type == "cuda")
    dataset = loader.dataset
    batches = iter(_batches(loader, probe=not isinstance(data, DataLoader)))
    first = next(batches, None)
    if first is None:
        raise ValueError("The dataset is empty: the DataLoader gave no batches")
    images, _ = _split(first, 0)
    size = tuple(images.shape[-2:])
    info = PassInfo(model, dataset, n, size, images.shape[1])
    for consumer in consumers:
        consumer.begin(info)
    outputs = list(dict.fromkeys(name for c in consumers for name in c.outputs))
    wanted = list(dict.fromkeys(name for c in consumers for name in c.inputs))
    from tqdm.auto import tqdm

    with ExitStack() as stack:
        cap = stack.enter_context(ActivationCapture(model, outputs, device=target))
        inputs = _capture_inputs(cap, wanted)
        report = progress if callable(progress) else None
        shown = bool(progress) and report is None
        bar = stack.enter_context(tqdm(total=n, desc=desc, unit="img", disable=not shown))
        start = 0
        for raw in _chain(first, batches):
            images, labels = _split(raw, start)
            if tuple(images.shape[-2:]) != size:
                raise ValueError(
                    f"Images change size from {size} to {tuple(images.shape[-2:])} at item "
                    f"{start}; give the dataset a transform that makes them one size"
                )
            inputs.clear()
            outs = cap(images.to(target, non_blocking=True), first_index=start)
            b = images.shape[0]
            batch = Batch(
                start=start,
                indices=torch.arange(start, start + b, device=target),
                labels=labels.to(target) if labels is not None else None,
                outputs=outs,
                inputs=dict(inputs),
                logits=cap.logits,
                images=images,
                raw_labels=raw[1],
            )
            for consumer in consumers:
                consumer.update(batch)
            start += b
            bar.update(b)
            if report is not None:
                report(start, n)
    return [consumer.result() for consumer in consumers]


def _chain(first: Any, rest: Iterable[Any]) -> Iterable[Any]:
    yield first
    yield from rest


def _capture_inputs(cap: ActivationCapture, names: list[str]) -> dict:
    """Forward pre-hooks on the capture's view that keep the first input of each named module."""
    seen: dict[str, torch.Tensor] = {}
    for name in names:

        def hook(module, args, name=name):
            seen[name] = args[0].detach().clone()

        cap.modules[name].register_forward_pre_hook(hook)
    return seen


# --------------------------------------------------------------- public ----


def _reference(obj: Any) -> Callable[[], Any]:
    """A weak reference to `obj`, or a strong one where it takes none."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


class PassCache:
    """The last few results of dataset passes, keyed by what they depend on (`data_key`).

    An entry also names `owners`, objects whose ids are in its key (the model; the data when
    keyed by identity): it hits only for those very objects, as ids can be reused after garbage
    collection. The owners are held weakly: the cache does not keep a model alive.
    """

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: OrderedDict[tuple, tuple[tuple, Any]] = OrderedDict()

    def get(self, key: tuple, owners: tuple = ()) -> Any:
        """The cached result, or None."""
        hit = self._entries.get(key)
        if hit is None or len(hit[0]) != len(owners):
            return None
        if any(ref() is not obj for ref, obj in zip(hit[0], owners, strict=True)):
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: tuple, owners: tuple, result: Any) -> None:
        """Keep `result`, dropping the oldest entry beyond `size`."""
        self._entries[key] = (tuple(_reference(obj) for obj in owners), result)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


_CACHE = PassCache()


def data_key(data: Dataset | DataLoader) -> tuple:
    """The part of a cache key that stands for the data: ("content", `data_fingerprint`) (its
    length and a hash of a sample of its items), or ("object", id, length) for data that cannot
    be read by index, which then hits only for the very same object. A shuffling DataLoader
    is refused here, before any cache lookup, as the pass would refuse it."""
    if isinstance(data, DataLoader):
        check_sequential(data)
    digest = data_fingerprint(data)
    if digest is None:
        return ("object", id(data), dataset_length(data))
    return ("content", digest)


def _same(result: Any) -> Any:
    return result


@dataclass
class CachedJob:
    """One consumer of a dataset pass, with where its result is cached (`cache=None`: not).

    `finish` is applied once, before caching; `adopt` to every result returned, hit or not
    (what is the caller's rather than the data's, such as the dataset object to show). An
    `optional` job rides along a pass that runs anyway: when every other job is a cache hit,
    no pass runs and its result is None.
    """

    consumer: Consumer
    cache: PassCache | None = None
    key: tuple | None = None
    finish: Callable[[Any], Any] = _same
    owners: tuple = ()  # the objects named by id in the key (see PassCache)
    adopt: Callable[[Any], Any] = _same
    optional: bool = False


def cache_slot(
    cache: PassCache,
    model: nn.Module,
    data: Dataset | DataLoader,
    key: tuple,
    data_part: tuple | None,
) -> dict:
    """`cache`, `key` and `owners` of a cached job: (id(model), *key, the data's key) (`data_key`,
    computed unless given as `data_part`). A `predict.bound_model` is keyed as the user's
    model and what it binds (its fixed inputs by content), so that two binds of the same
    inputs share their results."""
    data_part = data_part or data_key(data)
    model, bound = bound_source(model)
    owners = (model, data) if data_part[0] == "object" else (model,)
    return {"cache": cache, "key": (id(model), *key, *bound, data_part), "owners": owners}


def names_key(data: Dataset | DataLoader, names: Sequence[str] | None) -> tuple | None:
    """`names` as part of a cache key where they name the labels (string labels), else None."""
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if not names or not (isinstance(dataset, IterableDataset) or string_labels(dataset)):
        return None
    return tuple(map(str, names))


def cached_pass(
    model: nn.Module, data: Dataset | DataLoader, jobs: Sequence[CachedJob], **options
) -> list[Any]:
    """The results of `jobs`: cache hits as they are, every miss computed in ONE `dataset_pass`
    (`options` are its keyword arguments) and cached."""
    results = [j.cache.get(j.key, j.owners) if j.cache is not None else None for j in jobs]
    todo = [i for i, result in enumerate(results) if result is None]
    if all(jobs[i].optional for i in todo):  # every hit, or only optional jobs missed
        pairs = zip(jobs, results, strict=True)
        return [None if result is None else job.adopt(result) for job, result in pairs]
    if todo:
        fresh = dataset_pass(model, data, [jobs[i].consumer for i in todo], **options)
        for i, result in zip(todo, fresh, strict=True):
            job = jobs[i]
            results[i] = job.finish(result)
            if job.cache is not None:
                job.cache.put(job.key, job.owners, results[i])
    return [job.adopt(result) for job, result in zip(jobs, results, strict=True)]


def top_job(
    model: nn.Module,
    dataset: Dataset | DataLoader,
    layers: LayerRef | Sequence[LayerRef],
    k: int = 9,
    *,
    distinct: bool = True,
    display: Callable[[int], np.ndarray] | None = None,
    cache: bool = True,
    fingerprint: str | None = None,
    data: tuple | None = None,
    classes: Sequence[str] | None = None,
) -> CachedJob:
    """The top-k pass of `top_activations` as a job of `cached_pass` (checked, keyed).

    `fingerprint` (of the weights) and `data` (`data_key(dataset)`) when already computed.
    """
    names = class_names(classes)
    consumer = TopKConsumer(model, layers, k, distinct=distinct, display=display, names=names)
    n = dataset_length(dataset)
    if n == 0:
        raise ValueError("The dataset is empty: there are no activations to rank")
    if distinct and n is not None and k > n:
        raise ValueError(
            f"k={k} is larger than the dataset ({n} images): each image counts once per "
            f"channel, so choose k <= {n} (or distinct=False)"
        )
    shown = dataset.dataset if isinstance(dataset, DataLoader) else dataset

    def adopt(result: dict[str, TopActivations]) -> dict[str, TopActivations]:
        # a hit may come from another object with the same contents: show the caller's
        return {name: replace(top, dataset=shown, display=display) for name, top in result.items()}

    if not cache:
        return CachedJob(consumer, adopt=adopt)
    fingerprint = fingerprint or weights_fingerprint(model)
    key = (fingerprint, consumer.outputs, k, distinct, names_key(dataset, names))
    return CachedJob(consumer, adopt=adopt, **cache_slot(_CACHE, model, dataset, key, data))


def top_activations(
    model: nn.Module,
    dataset: Dataset | DataLoader,
    layers: LayerRef | Sequence[LayerRef],
    k: int = 9,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = True,
    distinct: bool = True,
    num_workers: int = 0,
    display: Callable[[int], np.ndarray] | None = None,
    cache: bool = True,
    classes: Sequence[str] | None = None,
    forward_args: Sequence[Any] = (),
) -> dict[str, TopActivations]:
    """Per channel of each layer, the k dataset units with the largest activation: one pass.

    Results are cached by (model weights, layers, k, distinct, the dataset's length and a hash
    of a sample of its items: see `fingerprint.data_fingerprint`); `display(i)` gives the uint8
    image `patch()` crops (default: see `display_image`). `classes` name string labels (see
    `read_labels`); `forward_args` are the model's further inputs after the image, held fixed
    (`predict.bound_model`).
    """
    model = bound_model(unwrap(model), forward_args)  # unwrap: the module inside (wrappers.py)
    job = top_job(
        model, dataset, layers, k, distinct=distinct, display=display, cache=cache, classes=classes
    )
    (result,) = cached_pass(
        model,
        dataset,
        [job],
        batch_size=batch_size,
        device=device,
        progress=progress,
        num_workers=num_workers,
        desc="top activations",
    )
    return result
