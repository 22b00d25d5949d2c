"""A dataset item that cannot be read, named by its index: which one, what it raised, the fix.

A truncated image file at item 37 raises deep inside a DataLoader as a bare `OSError`; here it
becomes a `DatasetItemError` that names `dataset[37]` (or, for a batch of a DataLoader the user
gave, the batch's index range) and keeps the original error as its `__cause__`.

An item that reads differently each time (a random crop or flip in the dataset's transform)
draws a `RandomItemWarning`, once per dataset: the views read items again to show them (the
top patches' crops, their effective fields), so what they show would not be the draw the
model saw. `read_item` notes a digest of the first images it reads of each dataset and
compares an item read again with it: no extra reads (the checks of `dataset[0]`, the pass
cache's sample and the crops read items again anyway), nothing drawn from the random streams.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
import weakref
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset


class DatasetItemError(RuntimeError):
    """Reading a dataset item (or one of a batch of them) raised; `__cause__` is that error."""


def item_error(err: BaseException, first: int, last: int | None = None) -> DatasetItemError:
    """The error for `dataset[first]` (or one of `dataset[first..last]`) having raised `err`."""
    if last is None or last == first:
        where, fix = f"dataset[{first}]", f"check dataset[{first}]"
    else:
        where = f"one of dataset[{first}]..dataset[{last}] (a batch of the DataLoader)"
        fix = f"check dataset[{first}] to dataset[{last}] (read them one by one to find it)"
    return DatasetItemError(
        f"Reading {where} failed: {type(err).__name__}: {err}. {fix.capitalize()}: fix or "
        "replace the item, or leave it out (torch.utils.data.Subset with the other indices)"
    )


def read_item(dataset: Any, index: int) -> Any:
    """`dataset[index]`, or a `DatasetItemError` naming the index (from the error it raised).

    Warns (`RandomItemWarning`, once per dataset) when the item's image differs from the one
    an earlier read of the same index gave."""
    try:
        item = dataset[index]
    except Exception as err:
        raise item_error(err, index) from err
    _compare(dataset, index, item)
    return item


class RandomItemWarning(UserWarning):
    """A dataset item read twice gave two different images (a random transform)."""


#: images of a dataset whose digests `read_item` keeps (the first indices it reads)
TRACKED_ITEMS = 64
#: reads again that found the same image, after which a dataset counts as deterministic
SAME_READS = 32
#: class names of random torchvision transforms that do not start with "Random"
_RANDOM_NAMES = {
    "AugMix",
    "AutoAugment",
    "ColorJitter",
    "ElasticTransform",
    "GaussianBlur",
    "RandAugment",
    "ScaleJitter",
    "TrivialAugmentWide",
}


class _Seen:
    """What `read_item` knows of one dataset: its images' digests by index, reads again
    that matched; `done` once warned or judged deterministic."""

    def __init__(self):
        self.digests: dict[int, bytes] = {}
        self.same = 0
        self.done = False


_seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _state(dataset: Any) -> _Seen | None:
    with _lock:
        try:
            seen = _seen.get(dataset)
            if seen is None:
                seen = _seen[dataset] = _Seen()
        except TypeError:  # not weakly referable or not hashable (a list): not checked
            return None
        return None if seen.done else seen


def _digest(item: Any) -> bytes | None:
    """A hash of an item's image (item[0] of a tuple/list): tensor, array or PIL image."""
    image = item[0] if isinstance(item, (tuple, list)) and item else item
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(image, np.ndarray) and image.dtype.kind in "biuf":
        digest.update(f"{image.shape}:{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    elif callable(getattr(image, "tobytes", None)) and hasattr(image, "mode"):  # PIL
        digest.update(f"{image.mode}:{image.size}".encode())
        digest.update(image.tobytes())
    else:
        return None
    return digest.digest()


def _compare(dataset: Any, index: int, item: Any) -> None:
    seen = _state(dataset)
    if seen is None or (index not in seen.digests and len(seen.digests) >= TRACKED_ITEMS):
        return
    try:
        digest = _digest(item)
    except Exception:  # an image we cannot read the bytes of: no opinion
        return
    if digest is None:
        return
    with _lock:
        if seen.done:
            return
        before = seen.digests.get(index)
        if before is None:  # a first read: noted
            seen.digests[index] = digest
            return
        if before == digest:  # a read again that matched
            seen.same += 1
            seen.done = seen.same >= SAME_READS
            if seen.done:
                seen.digests.clear()
            return
        seen.done = True
        seen.digests.clear()
    warnings.warn(random_item_message(dataset, index), RandomItemWarning, stacklevel=3)


def random_transforms(dataset: Any) -> list[str]:
    """Names of the random transforms in `dataset`'s transform (and those of the datasets it
    wraps: Subset, ConcatDataset), e.g. ["RandomResizedCrop", "RandomHorizontalFlip"]."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if obj is None or id(obj) in seen or depth > 6:
            return
        seen.add(id(obj))
        name = type(obj).__name__
        if name.startswith("Random") or name in _RANDOM_NAMES:
            found.append(name)
        for attr in ("transform", "transforms", "dataset", "datasets"):  # Compose, Subset
            value = getattr(obj, attr, None)
            for each in value if isinstance(value, (list, tuple)) else [value]:
                walk(each, depth + 1)

    with contextlib.suppress(Exception):  # attributes that raise: what was found so far
        walk(dataset, 0)
    return list(dict.fromkeys(found))


def random_item_message(dataset: Any, index: int) -> str:
    """The `RandomItemWarning` for `dataset[index]` having read differently the second time."""
    names = random_transforms(dataset)
    why = (
        f"{', '.join(names)} in its transform"
        if names
        else "its __getitem__ or transform draws random numbers"
    )
    return (
        f"dataset[{index}] ({type(dataset).__name__}) gave a different image when read again: "
        f"its items are random ({why}). The views read items again to show them (the top "
        "patches' crops, their effective fields), so what they show may not be the draw the "
        "model saw and ranked. Give the views the dataset with a deterministic transform, e.g. "
        "transforms.Resize(256) + transforms.CenterCrop(224) instead of "
        "RandomResizedCrop(224), and no random flips"
    )


def batch_error(err: BaseException, loader: DataLoader, start: int, probe: bool) -> Exception:
    """The error for the loader's batch from item `start` on having raised `err`: the item that
    raises, found by reading the batch's items again when `probe`, else the batch's range."""
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset):
        return DatasetItemError(
            f"Reading the items of {type(dataset).__name__} after the first {start} failed: "
            f"{type(err).__name__}: {err}. Check the items it yields from item {start} on"
        )
    last = start + (loader.batch_size or 1) - 1
    with contextlib.suppress(TypeError):  # a dataset without a length
        last = min(last, len(dataset) - 1)
    if probe:
        for index in range(start, last + 1):
            try:
                dataset[index]
            except Exception:
                return item_error(err, index)
    return item_error(err, start, last)


def batch_length(batch: Any, loader: DataLoader) -> int:
    """How many items a collated (images, labels) batch holds (else the loader's batch size)."""
    images = batch[0] if isinstance(batch, (tuple, list)) and batch else None
    try:
        return len(images)
    except TypeError:
        return loader.batch_size or 1
