"""The exact global top-k of a channel from the top-k of each block, folded in block order.

Every unit of the global top-k is in its own block's top-k (whatever outranks it in its block
outranks it globally), so the top-k of the union of the blocks' top-k is the global one. The
order is the in-process pass's: value descending, then dataset index, then position
(`inspect.dataset.topk_lexicographic` prefers the lower column among equal values, and the
columns are laid out in that order: the running top-k, whose units come from earlier blocks,
before the next block's, each sorted by value, then index, then position).
"""

from __future__ import annotations

import numpy as np
import torch

from ..inspect.dataset import topk_lexicographic
from .block import TOP_FIELDS


def fold_topk(
    running: dict[str, np.ndarray] | None, block: dict[str, np.ndarray], k: int
) -> dict[str, np.ndarray]:
    """The top-k of `running` (from earlier blocks) and `block`, both (C, m) per field."""
    if running is None:
        merged = block
    else:
        merged = {f: np.concatenate([running[f], block[f]], axis=1) for f in TOP_FIELDS}
    values = torch.from_numpy(np.ascontiguousarray(merged["values"]))
    values, columns = topk_lexicographic(values, k)
    columns = columns.numpy()
    found = {f: np.take_along_axis(merged[f], columns, axis=1) for f in TOP_FIELDS if f != "values"}
    found["values"] = values.numpy()
    return found
