"""Hashes that key the dataset-pass caches: of a model's weights and of the data a pass reads.

>>> weights_fingerprint(model)    # every parameter and buffer
>>> data_fingerprint(dataset)     # length + a sample of items (+ `targets`); None: not indexable

`data_fingerprint` reads `SAMPLE_ITEMS` (16) items spread evenly over the dataset, always the
same indices for a given length (the first and the last among them), and hashes their bytes:
images, labels, whatever the item holds. Replacing items in place (same object) changes it when
a replaced item is among the sampled ones, or when the dataset's `targets` (hashed whole: they
are cheap) change; a new object with the same contents gives the same hash. Items are read with
the random generators (torch, NumPy, `random`) seeded and then restored, so a dataset with
random augmentation hashes the same each time while the caller's random streams are untouched.

Cost, paid on every cached call (hit or miss): 16 `dataset[i]` reads (for an image folder: 16
decodes and transforms) plus hashing their bytes with BLAKE2b (about 1 GB/s), and a hash of
the weights. A change to items that are not sampled goes unseen: clear the cache
(`clear_feature_cache()`) or pass `cache=False` after editing a few items of a large dataset.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, default_collate

from .items import read_item
from .wrappers import unwrap

SAMPLE_ITEMS = 16
"""How many items of a dataset its fingerprint reads."""


def _tensor(digest: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{tuple(t.shape)}:{t.dtype}".encode())
    # reshape: a 0-d tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes
    if t.numel():
        digest.update(t.reshape(-1).view(torch.uint8).numpy())


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes and bytes)."""
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:".encode())
        _tensor(digest, tensor)
    return digest.hexdigest()


def hash_value(digest: Any, value: Any) -> None:
    """Feed `value` (tensors, arrays, numbers, strings, nested tuples/lists/dicts, images with
    `tobytes`) into `digest`. Anything else by its repr: one that shows an address never
    matches again, so such items make the cache miss, never hit stale."""
    if isinstance(value, torch.Tensor) and value.layout == torch.strided:
        digest.update(b"T")
        _tensor(digest, value)
    elif isinstance(value, np.ndarray):
        digest.update(f"A{value.shape}:{value.dtype.str}".encode())
        if value.dtype.hasobject:
            hash_value(digest, value.tolist())
        else:
            digest.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
    elif isinstance(value, (tuple, list)):
        digest.update(f"{type(value).__name__}{len(value)}(".encode())
        for v in value:
            hash_value(digest, v)
        digest.update(b")")
    elif isinstance(value, dict):
        digest.update(f"dict{len(value)}(".encode())
        for k in sorted(value, key=repr):
            hash_value(digest, k)
            hash_value(digest, value[k])
        digest.update(b")")
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    elif callable(getattr(value, "tobytes", None)) and hasattr(value, "size"):  # PIL images
        digest.update(f"{type(value).__name__}:{getattr(value, 'mode', '')}:{value.size}".encode())
        digest.update(value.tobytes())
    else:
        digest.update(f"{type(value).__qualname__}:{value!r};".encode())


@contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """torch's CPU generator, NumPy's global one and `random` seeded, then restored."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def sample_indices(n: int, count: int = SAMPLE_ITEMS) -> list[int]:
    """`count` indices spread evenly over 0..n-1 (all of them when n <= count)."""
    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, count)).round()})


def data_fingerprint(data: Any) -> str | None:
    """A hash of what a pass over `data` reads (see the module docstring); None when the data
    cannot be read by index (an iterable dataset): then only the very same object can match.

    For a DataLoader: its dataset's, plus the batch size when it drops the last batch; None
    when it collates with its own function (what that does to the images is not sampled).
    """
    if isinstance(data, DataLoader) and data.collate_fn is not default_collate:
        return None
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
        return None
    try:
        n = len(dataset)
    except TypeError:
        return None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{type(dataset).__qualname__}:{n}".encode())
    if isinstance(data, DataLoader) and data.drop_last:
        digest.update(f"drop_last:{data.batch_size}".encode())
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, (torch.Tensor, np.ndarray, list, tuple)):
        digest.update(b"targets")
        hash_value(digest, np.asarray(targets.cpu() if torch.is_tensor(targets) else targets))
    with seeded():
        for i in sample_indices(n):
            digest.update(f"[{i}]".encode())
            hash_value(digest, read_item(dataset, i))
    return digest.hexdigest()
