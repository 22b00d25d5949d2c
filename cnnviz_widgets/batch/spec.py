"""What a batch job computes (`JobSpec`) and how its model and data are named (factories).

A job is keyed by the model's weights fingerprint, the data's fingerprint and its spec
(`job_key`): a block written by one job is reused only by a rerun of the very same job.
The device is not part of the key (a rerun on another device reuses the blocks).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..inspect.capture import resolve_layer
from ..inspect.dataset import class_names, features_from
from ..inspect.features import DTYPES

Factory = Callable[[], Any] | str
"""A zero-argument function, or its import path "package.module:function"."""


@dataclass(frozen=True)
class JobSpec:
    """The pass every block runs: top-k of `layers`, features of `feature_layer`, thumbnails."""

    layers: tuple[str, ...]  # resolved module names whose per-channel top-k is kept
    k: int
    distinct: bool
    feature_layer: str  # the layer the features come from
    from_input: bool  # its input (the default: the classifier's input) rather than its output
    dtype: str  # the features' dtype: float32 or float16
    batch_size: int
    block_size: int  # images per block, a multiple of batch_size
    thumbnails: int | None  # the longer side of the thumbnails in pixels; None: none
    classes: tuple[str, ...] | None  # the names string labels are mapped to

    def as_dict(self) -> dict[str, Any]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


def make_spec(
    model,
    layers: Sequence[Any] = (),
    k: int = 9,
    *,
    distinct: bool = True,
    feature_layer: Any = None,
    dtype: Any = np.float32,
    batch_size: int = 256,
    block_size: int = 1024,
    thumbnails: int | None = None,
    classes: Sequence[str] | None = None,
) -> JobSpec:
    """A checked `JobSpec`: layers resolved by `model`, sizes checked, before any work."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    for name, value in (("batch_size", batch_size), ("block_size", block_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if block_size % batch_size:
        raise ValueError(
            f"block_size={block_size} is not a multiple of batch_size={batch_size}: blocks must "
            "start on the batch boundaries of the in-process pass, so that both compute the same "
            f"numbers; choose e.g. block_size={max(1, block_size // batch_size) * batch_size}"
        )
    if thumbnails is not None and (isinstance(thumbnails, bool) or int(thumbnails) < 1):
        raise ValueError(f"thumbnails must be a positive pixel size or None; got {thumbnails!r}")
    if isinstance(layers, str):
        layers = [layers]
    names = tuple(dict.fromkeys(resolve_layer(model, layer)[0] for layer in layers))
    feature, from_input = features_from(model, feature_layer)
    names_of_classes = class_names(classes)
    return JobSpec(
        layers=names,
        k=k,
        distinct=bool(distinct),
        feature_layer=feature,
        from_input=from_input,
        dtype=check_dtype(dtype),
        batch_size=batch_size,
        block_size=block_size,
        thumbnails=None if thumbnails is None else int(thumbnails),
        classes=None if names_of_classes is None else tuple(names_of_classes),
    )


def check_dtype(dtype: Any) -> str:
    """The name of a features dtype (float32 or float16), or a ValueError listing them."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    return name


def job_key(spec: JobSpec, model_fp: str, data_fp: str, length: int) -> str:
    """A hash of everything a block's numbers depend on (bar the device)."""
    text = json.dumps(
        {"spec": spec.as_dict(), "model": model_fp, "data": data_fp, "length": length},
        sort_keys=True,
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def load_factory(factory: Factory) -> Callable[[], Any]:
    """The function a factory names: itself, or "package.module:function" imported."""
    if callable(factory):
        return factory
    if not isinstance(factory, str) or factory.count(":") != 1:
        raise ValueError(
            f"A factory is a zero-argument function or its import path 'package.module:function'"
            f"; got {factory!r}"
        )
    module_name, _, attr = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"Cannot import {module_name!r} (from {factory!r}): {err}; the module must be "
            "importable where the job runs (on every Ray worker too)"
        ) from err
    found = module
    for part in attr.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f"{module_name!r} has no {attr!r} (from {factory!r})")
    if not callable(found):
        raise ValueError(f"{factory!r} is a {type(found).__name__}, not a function")
    return found
