"""Krypton-style exact incremental inference for occlusion maps.

An occluding patch changes, in each layer's output, only a rectangle that grows with the
layer's kernel and shrinks with its stride. :class:`IncrementalEngine` traces the model with
``torch.fx``, keeps every node's activation for the unoccluded image (the *base*) and, for a
batch of patch positions, recomputes per node only that rectangle. One idea per module:

- `plan`: which rectangle of each node's output changes, and which nodes go full (the maths);
- `ops`: how each op is computed, read from the shared table in `..geometry`;
- `gather`: every input window of a batch in one `index_select` from a padded base;
- `run`: executing a plan on a batch of positions (`fold`: conv + BatchNorm folded for it);
- `engine`: tracing, the base pass, `plan` and `run` together.

An op the engine does not know falls back to full recompute from there on, with one
:class:`UnsupportedOpWarning` naming it: never a wrong answer. Everything is device-agnostic
(CPU and CUDA): index tensors live on the model's device.
"""

from .engine import IncrementalEngine, UnfaithfulGraphError, UnsupportedOpWarning, trace
from .plan import DEFAULT_FULL_THRESHOLD, IncrementalPlan, plan_macs

__all__ = [
    "DEFAULT_FULL_THRESHOLD",
    "IncrementalEngine",
    "IncrementalPlan",
    "UnfaithfulGraphError",
    "UnsupportedOpWarning",
    "plan_macs",
    "trace",
]
