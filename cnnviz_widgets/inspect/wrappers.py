"""Models inside wrappers: `torch.compile`, `nn.DataParallel`, `DistributedDataParallel`.

A wrapper holds the user's module (`._orig_mod`, `.module`) and runs it through a forward of
its own; the compiled module's forward is bound to the original module, so a view of the
wrapper would run the user's model itself, in its own mode (in train mode: BatchNorm's running
statistics overwritten). Every public entry point that takes a model therefore views the
module inside instead (`unwrap`, once per entry), with a warning; its layer names are the
module's own, and a name given with the wrapper's prefix (`"_orig_mod.layer4"`,
`"module.layer4"`) still resolves (`unprefixed`, called by `capture.resolve_layer`).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from torch import nn

#: the prefix each wrapper puts before the names of the module it holds
PREFIXES = ("_orig_mod.", "module.")
_PACKAGE = os.path.dirname(os.path.dirname(__file__)) + os.sep  # as code objects name it
_SHOWN = {"OptimizedModule": "torch.compile", "DataParallel": "nn.DataParallel"}


def wrapped(model: Any) -> tuple[nn.Module, str] | None:
    """(the module `model` wraps, the attribute holding it) for a known wrapper, else None."""
    # torch._dynamo is slow to import: a compiled model exists only once it has been imported
    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    if dynamo is not None and isinstance(model, dynamo.OptimizedModule):
        return model._orig_mod, "_orig_mod"
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module, "module"
    return None


def _caller_level() -> int:
    """The `stacklevel` of the outermost caller outside this package (the user's line)."""
    frame, level, found = sys._getframe(1), 1, 1
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            found = level + 1
        frame, level = frame.f_back, level + 1
    return found


def unwrap(model: Any) -> Any:
    """The module inside `model`'s wrappers (torch.compile, DataParallel, DDP, nested), with
    a `UserWarning` saying so; anything else is returned as it is."""
    inner, path, shown = model, "model", []
    while (found := wrapped(inner)) is not None:
        shown.append(_SHOWN.get(type(inner).__name__, type(inner).__name__))
        inner, attribute = found
        path += f".{attribute}"
    if not shown:
        return model
    name = type(inner).__name__
    prefix = path.removeprefix("model.") + "."
    warnings.warn(
        f"The model is {'('.join(shown)}({name}{')' * len(shown)}: its {name} ({path}) is what "
        f"is shown, in an eval-mode view, never through the wrapper's forward; layer names are "
        f"the {name}'s own, without the '{prefix}' prefix (a name with it is read without). "
        f"Pass {path} to skip this warning",
        UserWarning,
        stacklevel=_caller_level(),
    )
    return inner


def unprefixed(model: nn.Module, layer: Any) -> Any:
    """`layer` without the wrappers' prefixes (`PREFIXES`) where `model` has no module of the
    prefixed name; a module, or a name the model has, as it is."""
    if not isinstance(layer, str) or not layer.startswith(PREFIXES):
        return layer
    names = {name for name, _ in model.named_modules()}
    while layer not in names and layer.startswith(PREFIXES):
        layer = layer.split(".", 1)[1]
    return layer
