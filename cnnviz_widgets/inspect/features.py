"""Per-image features of a dataset in one pass, cached so that a re-run is instant.

>>> feats = extract_features(model, dataset)          # (N, D) float32: penultimate features
>>> pooled = extract_features(model, dataset, layer="layer3")  # conv output, average-pooled

The penultimate features are the input of the model's last nn.Linear, or, where it has none
(a 1x1-conv classifier before global pooling: SqueezeNet, some MobileNets), the input of its
last nn.Conv2d, global-average-pooled (`dataset.classifier_layer`; `Features.source` says
which). A spatial layer's output (N, C, H, W) is global-average-pooled to (N, C).

The cache key is (model object, weights fingerprint, layer, dtype, data fingerprint): changing
a weight (training, `load_state_dict`) misses it, and so does changing the dataset's length or
any of the 16 items its fingerprint samples (`fingerprint.data_fingerprint`), in place or not;
a new dataset object with the same contents hits. A hit returns the very same read-only
arrays; it costs one hash of the weights and 16 item reads hashed (the demo digits: about
1 ms of a 4 ms call; the 310 demo photos, 3x224x224 floats, Lite0: 0.1-0.3 s for the items and
0.1-0.3 s for the weights on two busy cores; an image folder adds 16 decodes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .capture import LayerRef
from .dataset import (
    CachedJob,
    FeatureConsumer,
    Features,
    PassCache,
    cache_slot,
    cached_pass,
    class_names,
    data_key,
    dataset_length,
    names_key,
    top_job,
    weights_fingerprint,
)
from .predict import bound_model, scores_key
from .wrappers import unwrap

DTYPES = ("float32", "float16")

_CACHE = PassCache()


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}") from err
    if dt.name not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    return dt


def _frozen(features: Features) -> Features:
    for array in (features.features, features.labels, features.predictions, features.confidences):
        if array is not None:
            array.flags.writeable = False
    return features


def feature_job(
    model: nn.Module,
    dataset: Dataset | DataLoader,
    layer: LayerRef | None = None,
    *,
    dtype: Any = np.float32,
    cache: bool = True,
    fingerprint: str | None = None,
    data: tuple | None = None,
    preview: Callable[[Callable[[], Features]], None] | None = None,
    class_scores: Any = None,
    classes: Sequence[str] | None = None,
) -> CachedJob:
    """The pass of `feature_pass` as a job of `cached_pass` (checked, keyed).

    `fingerprint` (of the weights) and `data` (`data_key(dataset)`) when already computed;
    `preview`, `class_scores` as in `FeatureConsumer` (`preview` not called on a cache hit).
    """
    names = class_names(classes)
    consumer = FeatureConsumer(
        model,
        layer,
        dtype=_check_dtype(dtype),
        preview=preview,
        class_scores=class_scores,
        names=names,
    )
    n = dataset_length(dataset)
    if n == 0:
        raise ValueError("The dataset is empty: there are no features to extract")
    if not cache:
        return CachedJob(consumer, finish=_frozen)
    fingerprint = fingerprint or weights_fingerprint(model)
    key = (
        fingerprint, consumer.layer, consumer.inputs, consumer.dtype.name, scores_key(class_scores),
        names_key(dataset, names),
    )  # fmt: skip
    return CachedJob(consumer, finish=_frozen, **cache_slot(_CACHE, model, dataset, key, data))


def feature_pass(
    model: nn.Module,
    dataset: Dataset | DataLoader,
    layer: LayerRef | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    dtype: Any = np.float32,
    cache: bool = True,
    preview: Callable[[Callable[[], Features]], None] | None = None,
    extra: Sequence[CachedJob] = (),
    class_scores: Any = None,
    forward_args: Sequence[Any] = (),
    classes: Sequence[str] | None = None,
) -> Features:
    """Features, labels, predictions and confidences of every image: one cached pass.

    `layer=None` takes the penultimate features: the input of the model's last nn.Linear, or,
    where it has none, of its last nn.Conv2d (see the module's docstring); a named layer's
    (N, C, H, W) output is global-average-pooled to (N, C). `dtype` float16
    halves the host memory for large datasets. Arrays of a result are read-only (they are
    shared with the cache). `preview(rows)` is called after each batch, `rows()` giving the
    features so far (see `FeatureConsumer`). `extra` jobs ride the same pass (their results
    reach their own `finish`). `class_scores`: where the class scores are in what the model returns
    (`predict.pick_scores`; with None, no predictions where it finds none); `forward_args`:
    the model's further inputs after the image, held fixed; `classes`: the class names string
    labels are mapped to (see `dataset.read_labels`).
    """
    model = bound_model(unwrap(model), forward_args)  # unwrap: the module inside (wrappers.py)
    job = feature_job(
        model, dataset, layer, dtype=dtype, cache=cache, preview=preview, class_scores=class_scores,
        classes=classes,
    )  # fmt: skip
    result, *_ = cached_pass(
        model,
        dataset,
        [job, *extra],
        batch_size=batch_size,
        device=device,
        progress=progress,
        num_workers=num_workers,
        desc="features",
    )
    return result


def extract_features(
    model: nn.Module,
    dataset: Dataset | DataLoader,
    layer: LayerRef | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    *,
    dtype: Any = np.float32,
    cache: bool = True,
    forward_args: Sequence[Any] = (),
) -> np.ndarray:
    """(N, D) features of every image (read-only); see `feature_pass` for labels and predictions.

    `layer=None`: the input of the last nn.Linear (else of the last nn.Conv2d); a conv
    layer's output is average-pooled. `forward_args`: the model's further inputs after the
    image, held fixed. Cached by (weights, layer, dtype, the dataset's length and sampled
    contents), so calling again with the same model and dataset returns the same array
    without a forward pass.
    """
    return feature_pass(
        model,
        dataset,
        layer,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
        dtype=dtype,
        cache=cache,
        forward_args=forward_args,
    ).features


def shared_pass(
    model: nn.Module,
    dataset: Dataset | DataLoader,
    top_layers: Sequence[LayerRef],
    k: int = 9,
    *,
    feature_layer: LayerRef | None = None,
    display=None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    preview: Callable[[Callable[[], Features]], None] | None = None,
    extra: Sequence[CachedJob] = (),
    class_scores: Any = None,
    classes: Sequence[str] | None = None,
) -> tuple[Features, dict]:
    """`feature_pass` and `top_activations` in ONE pass over the dataset (both cached).

    What CNNExplorer needs: the features of its map and the top patches of its layer, while
    the dataset is read (for an ImageFolder: decoded) once. Whatever is already cached is not
    computed again; later `feature_pass` / `top_activations` calls with the same arguments are
    cache hits. `preview`, `extra`, `class_scores` and `classes` as in `feature_pass`; the model
    takes the image alone (a `predict.bound_model` for further inputs).
    """
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
    fingerprint, data = weights_fingerprint(model), data_key(dataset)
    features, top, *_ = cached_pass(
        model,
        dataset,
        [
            feature_job(
                model,
                dataset,
                feature_layer,
                fingerprint=fingerprint,
                data=data,
                preview=preview,
                class_scores=class_scores,
                classes=classes,
            ),
            top_job(
                model,
                dataset,
                top_layers,
                k,
                display=display,
                fingerprint=fingerprint,
                data=data,
                classes=classes,
            ),
            *extra,
        ],
        batch_size=batch_size,
        device=device,
        progress=progress,
        num_workers=num_workers,
        desc="features + top activations",
    )
    return features, top


def clear_feature_cache() -> None:
    """Forget every cached feature pass (frees their memory)."""
    _CACHE.clear()
