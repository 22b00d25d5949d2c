"""A dataset item that cannot be read, named by its index: which one, what it raised, the fix.

A truncated image file at item 37 raises deep inside a DataLoader as a bare `OSError`; here it
becomes a `DatasetItemError` that names `dataset[37]` (or, for a batch of a DataLoader the user
gave, the batch's index range) and keeps the original error as its `__cause__`.
"""

from __future__ import annotations

import contextlib
from typing import Any

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
    """`dataset[index]`, or a `DatasetItemError` naming the index (from the error it raised)."""
    try:
        return dataset[index]
    except Exception as err:
        raise item_error(err, index) from err


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
