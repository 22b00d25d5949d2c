"""Per-image features of a dataset in one pass, cached so that a re-run is instant.

>>> feats = extract_features(model, dataset)          # (N, D) float32: penultimate features
>>> pooled = extract_features(model, dataset, layer="layer3")  # conv output, average-pooled

The cache key is (model object, weights fingerprint, layer, dtype, dataset object, length):
changing a weight (training, `load_state_dict`) misses it; so does a different dataset object.
A hit returns the very same read-only arrays, so it costs one hash of the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .capture import LayerRef
from .dataset import (
    FeatureConsumer,
    Features,
    PassCache,
    dataset_length,
    dataset_pass,
    weights_fingerprint,
)

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
) -> Features:
    """Features, labels, predictions and confidences of every image: one cached pass.

    `layer=None` takes the input of the model's last nn.Linear (the penultimate features);
    a named layer's (N, C, H, W) output is global-average-pooled to (N, C). `dtype` float16
    halves the host memory for large datasets. Arrays of a result are read-only (they are
    shared with the cache).
    """
    dt = _check_dtype(dtype)
    consumer = FeatureConsumer(model, layer, dtype=dt)
    n = dataset_length(dataset)
    if n == 0:
        raise ValueError("The dataset is empty: there are no features to extract")
    key = None
    if cache:
        key = (id(model), weights_fingerprint(model), consumer.layer, dt.name, id(dataset), n)
        hit = _CACHE.get(key, dataset)
        if hit is not None:
            return hit
    (result,) = dataset_pass(
        model,
        dataset,
        [consumer],
        batch_size=batch_size,
        device=device,
        progress=progress,
        num_workers=num_workers,
        desc="features",
    )
    result = _frozen(result)
    if key is not None:
        _CACHE.put(key, dataset, result)
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
) -> np.ndarray:
    """(N, D) features of every image (read-only); see `feature_pass` for labels and predictions.

    `layer=None`: the input of the last nn.Linear; a conv layer's output is average-pooled.
    Cached by (weights, layer, dtype, dataset), so calling again with the same model and
    dataset returns the same array without a forward pass.
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
    ).features


def clear_feature_cache() -> None:
    """Forget every cached feature pass (frees their memory)."""
    _CACHE.clear()
