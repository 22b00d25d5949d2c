"""One block of a batch job: images start..stop of the dataset through the in-process pass.

The block runs `inspect.dataset.dataset_pass` on `Subset(dataset, range(start, stop))` with
the widgets' own consumers: `FeatureConsumer` for features, labels and predictions, and the
per-layer `RunningTopK` (the state of `TopKConsumer`) for the top-k, its dataset indices
offset by `start`. As blocks start on the in-process pass's batch boundaries (`block_size` is
a multiple of `batch_size`), each batch is the very batch the in-process pass runs, so both
compute the same numbers bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Subset

from ..inspect.dataset import (
    Batch,
    FeatureConsumer,
    PassInfo,
    RunningTopK,
    batch_labels,
    dataset_pass,
    display_image,
    shows_tensors,
    tensor_pixels,
)
from ..render import fit_tiles
from .spec import JobSpec

TOP_FIELDS = ("values", "index", "position", "label")
"""The (C, m) arrays of a layer's top-k in a block, m <= k (fewer where the block is small)."""


def block_ranges(length: int, block_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each block: fixed ranges of `block_size` images, the last one shorter."""
    return [(s, min(s + block_size, length)) for s in range(0, length, block_size)]


@dataclass
class BlockResult:
    """What one block found: its rows and, per layer, its top-k (dataset indices, global)."""

    block: int
    start: int
    stop: int
    rows: dict[str, np.ndarray]  # features, labels[, predictions, confidences][, thumbnails]
    top: dict[str, dict[str, np.ndarray]]  # layer -> TOP_FIELDS
    map_sizes: dict[str, tuple[int, int]]  # layer -> (H, W) of its feature map
    pooled: bool  # the features are a spatial map average-pooled


class BlockTopK:
    """`TopKConsumer`'s update (a `RunningTopK` per layer, labels by `batch_labels`), with the
    block's indices shifted to dataset indices and its (C, m) state as the result, m <= k."""

    inputs: tuple[str, ...] = ()

    def __init__(self, spec: JobSpec, offset: int):
        self.outputs = spec.layers
        self.spec, self.offset = spec, offset
        self.state: dict[str, RunningTopK] = {}

    def begin(self, info: PassInfo) -> None:
        self.state = {name: RunningTopK(self.spec.k, self.spec.distinct) for name in self.outputs}

    def update(self, batch: Batch) -> None:
        labels = batch_labels(batch, self.spec.classes)
        indices = batch.indices + self.offset
        for name, state in self.state.items():
            state.update(batch.outputs[name], indices, labels)

    def result(self) -> dict[str, tuple[dict[str, np.ndarray], tuple[int, int]]]:
        found = {}
        for name, s in self.state.items():
            arrays = {
                "values": s.values.cpu().numpy().astype(np.float32),
                "index": s.index.cpu().numpy().astype(np.int64),
                "position": s.position.cpu().numpy().astype(np.int64),
                "label": s.label.cpu().numpy().astype(np.int64),
            }
            found[name] = (arrays, tuple(s.map_size))
        return found


class Thumbnails:
    """uint8 thumbnails (n, h, w[, 3]) as the embedding widget makes them: `display_image` of
    each item (from the batch the model reads where `shows_tensors`), `render.fit_tiles`."""

    outputs: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    def __init__(self, dataset: Any, px: int, offset: int):
        self.dataset, self.px, self.offset = dataset, px, offset
        self.parts: list[np.ndarray] = []

    def begin(self, info: PassInfo) -> None:
        self.parts = []

    def update(self, batch: Batch) -> None:
        if shows_tensors(self.dataset):
            images = [tensor_pixels(x, self.dataset) for x in batch.images]
        else:
            first = self.offset + batch.start
            images = [display_image(self.dataset, first + i) for i in range(len(batch.indices))]
        self.parts.append(fit_tiles(images, self.px))

    def result(self) -> np.ndarray:
        return np.concatenate(self.parts)


def compute_block(
    model: Any, dataset: Any, spec: JobSpec, block: int, length: int, device: Any = None
) -> BlockResult:
    """Block `block` of a dataset of `length` images: one `dataset_pass` over its range."""
    start = block * spec.block_size
    stop = min(start + spec.block_size, length)
    features = FeatureConsumer(
        model,
        None if spec.from_input else spec.feature_layer,
        dtype=np.dtype(spec.dtype),
        names=spec.classes,
    )
    consumers: list[Any] = [features]
    if spec.layers:
        consumers.append(BlockTopK(spec, start))
    if spec.thumbnails:
        consumers.append(Thumbnails(dataset, spec.thumbnails, start))
    part = Subset(dataset, range(start, stop))
    feats, *rest = dataset_pass(
        model, part, consumers, batch_size=spec.batch_size, device=device, progress=False
    )
    rows = {"features": np.asarray(feats.features), "labels": np.asarray(feats.labels)}
    if feats.predictions is not None:
        rows["predictions"] = np.asarray(feats.predictions)
        rows["confidences"] = np.asarray(feats.confidences)
    top_found = rest.pop(0) if spec.layers else {}
    if spec.thumbnails:
        rows["thumbnails"] = rest.pop(0)
    return BlockResult(
        block=block,
        start=start,
        stop=stop,
        rows=rows,
        top={name: arrays for name, (arrays, _) in top_found.items()},
        map_sizes={name: size for name, (_, size) in top_found.items()},
        pooled=feats.pooled,
    )
