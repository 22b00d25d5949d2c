"""The in-process engine: the blocks one after another in this process (no Ray needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import block as blocks
from .spec import JobSpec


def run_local(
    model: Any,
    dataset: Any,
    spec: JobSpec,
    todo: Sequence[int],
    length: int,
    write: Callable[[blocks.BlockResult], None],
    *,
    device: Any = None,
    progress: bool = True,
) -> None:
    """Compute each block of `todo` and hand it to `write` as soon as it is done."""
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc="blocks", unit="block", disable=not progress) as bar:
        for b in todo:
            write(blocks.compute_block(model, dataset, spec, b, length, device))
            bar.update(1)
