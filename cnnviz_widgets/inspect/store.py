"""Per-image results of a dataset pass, written batch by batch into arrays allocated once.

>>> rows = RowStore({"features": ((512,), np.float32), "labels": ((), np.int64)}, rows=50_000)
>>> rows.write(start, {"features": x, "labels": y})   # once per batch
>>> arrays = rows.finish()                               # {name: (count, ...) array}

Why not keep each batch's arrays and concatenate them at the end: every batch then leaves a
small long-lived allocation between the large short-lived ones (the images, the activations),
and the C heap can neither reuse nor return the gaps, so resident memory grew far faster than
the results, and erratically (+426 MB at 50,000 1x32x32 images for 24 MB of features in one
run; +0.3 to +1.2 GB at 100,000 for 51 MB: benchmarks/RESULTS.md), and the final
concatenation held the result twice. Here the arrays are allocated once, when the first batch
gives the feature width, and each batch is copied into its rows.

Where they live: together in one block, in memory up to `MEMMAP_BYTES` (64 MiB: below that a
result costs no more than a few batches of a large model's activations), above it in a
memory-mapped temporary file (`tempfile.gettempdir()`, so `TMPDIR` chooses the disk): its
pages are the page cache's, written back and dropped under memory pressure instead of
counting as the process's own memory. The file is unlinked as soon as it is mapped (POSIX), so
nothing is left behind even if the process dies; its disk space is returned when the last
array using it is garbage-collected. Where an open file cannot be unlinked (Windows) it is
removed when the mapping is collected.

When the number of rows is not known in advance (an iterable dataset) or turns out larger,
the block grows by doubling (one copy of the rows so far).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import weakref

import numpy as np

MEMMAP_BYTES = 64 * 2**20
"""Results above this many bytes go to a memory-mapped temporary file instead of memory."""

FILE_PREFIX = "cnnviz-pass-"
_ALIGN = 64
_FIRST_ROWS = 4096  # rows allocated first when the total is unknown


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def mapped_bytes(nbytes: int) -> np.ndarray:
    """A writable uint8 array of `nbytes` zeros backed by a memory-mapped temporary file.

    The file's name is removed at once where the OS allows it (then the space goes when the
    array and every view of it are collected), else when the mapping is collected.
    """
    fd, path = tempfile.mkstemp(prefix=FILE_PREFIX, suffix=".bin")
    try:
        with os.fdopen(fd, "w+b") as file:
            file.truncate(nbytes)
            mapped = np.memmap(file, np.uint8, "r+", shape=(nbytes,))
    except BaseException:
        _remove_quietly(path)
        raise
    try:
        os.remove(path)  # the mapping keeps the data; nothing is left if the process dies
    except OSError:  # an open, mapped file cannot be removed (Windows): remove it after
        weakref.finalize(mapped._mmap, _remove_quietly, path)
    return np.asarray(mapped)  # a plain ndarray whose .base (the memmap) holds the mapping


def allocate(
    columns: dict[str, tuple[tuple[int, ...], np.dtype]], rows: int
) -> dict[str, np.ndarray]:
    """Arrays (rows, *shape) of each column's dtype, in one block: in memory up to
    `MEMMAP_BYTES` in all, else in a memory-mapped temporary file (`mapped_bytes`)."""
    offsets, total = {}, 0
    for name, (shape, dtype) in columns.items():
        offsets[name] = total
        size = rows * math.prod(shape) * np.dtype(dtype).itemsize
        total += -(-size // _ALIGN) * _ALIGN
    block = np.empty(total, np.uint8) if total <= MEMMAP_BYTES else mapped_bytes(total)
    arrays = {}
    for name, (shape, dtype) in columns.items():
        dtype = np.dtype(dtype)
        size = rows * math.prod(shape) * dtype.itemsize
        part = block[offsets[name] : offsets[name] + size]
        arrays[name] = part.view(dtype).reshape(rows, *shape)
    return arrays


class RowStore:
    """Named columns of per-image rows filled batch by batch (see the module's docstring)."""

    def __init__(self, columns: dict[str, tuple[tuple[int, ...], np.dtype]], rows: int | None):
        self.columns = {name: (tuple(shape), np.dtype(dt)) for name, (shape, dt) in columns.items()}
        self.count = 0
        self._arrays = allocate(self.columns, rows if rows else _FIRST_ROWS)

    @property
    def capacity(self) -> int:
        return len(next(iter(self._arrays.values())))

    def write(self, start: int, values: dict[str, np.ndarray]) -> None:
        """Copy one batch's rows (cast to each column's dtype) into rows start..start+len."""
        b = len(next(iter(values.values())))
        end = start + b
        if end > self.capacity:
            self._grow(max(end, 2 * self.capacity))
        for name, value in values.items():
            self._arrays[name][start:end] = value
        self.count = max(self.count, end)

    def _grow(self, rows: int) -> None:
        bigger = allocate(self.columns, rows)
        for name, array in self._arrays.items():
            bigger[name][: self.count] = array[: self.count]
        self._arrays = bigger

    def head(self) -> dict[str, np.ndarray]:
        """The filled rows of every column, as views (the store goes on writing after them)."""
        return {name: array[: self.count] for name, array in self._arrays.items()}

    def finish(self) -> dict[str, np.ndarray]:
        """The filled rows of every column (views of the one block); the store lets go of them."""
        filled, self._arrays = self.head(), {}
        return filled
