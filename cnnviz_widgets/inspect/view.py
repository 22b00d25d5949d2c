"""An eval-mode view of the user's model: the same weights, its own flags, hooks and device.

Every computation runs on a view instead of the model the user holds, so the user's object is
never touched: not its training flags, not its device, not its hooks. The view is a structural
copy of the module tree (each module a new object of the same class, its attribute dict
copied) whose parameter and buffer slots hold the user's very tensors, so a weight the user
updates in place is what the next forward computes with, and nothing is copied on the model's
own device. On another device the view holds copies there (made when the view is built); a
device the tensors cannot go to fails while building the view, with the user's model as it was.

The user's own hooks are copied into the view (a weight-norm pre-hook is part of the model);
hooks registered on the view stay on the view.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .inputs import model_device
from .wrappers import unwrap


def _copy_tensor(t, target: torch.device, memo: dict):
    if t is None or t.device == target:
        return t
    if id(t) not in memo:  # tied weights stay tied on the other device
        moved = t.detach().to(target)
        memo[id(t)] = nn.Parameter(moved, t.requires_grad) if isinstance(t, nn.Parameter) else moved
    return memo[id(t)]


def _view(module: nn.Module, target: torch.device | None, memo: dict) -> nn.Module:
    if id(module) in memo:  # a module used twice in the tree stays one module
        return memo[id(module)]
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError(
            f"{type(module).__name__} is a TorchScript module, which cannot be viewed without "
            "changing it; give the Python nn.Module it was scripted from"
        )
    view = module.__class__.__new__(module.__class__)
    state = dict(module.__dict__)
    # `module.compile()` stores a compiled call bound to the user's module: the view would run
    # that module (its mode, its statistics) instead of itself
    state.pop("_compiled_call_impl", None)
    for key, value in state.items():
        if "hooks" in key and isinstance(value, dict):
            state[key] = type(value)(value)  # the user's hooks run, ours stay on the view
        elif isinstance(value, set):
            state[key] = set(value)
    state["_parameters"] = {
        k: _copy_tensor(p, target, memo) if target is not None else p
        for k, p in module._parameters.items()
    }
    state["_buffers"] = {
        k: _copy_tensor(b, target, memo) if target is not None else b
        for k, b in module._buffers.items()
    }
    state["training"] = False
    memo[id(module)] = view
    state["_modules"] = {
        k: None if m is None else _view(m, target, memo) for k, m in module._modules.items()
    }
    view.__dict__.update(state)
    return view


def eval_view(model: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """The model in eval mode (on `device`, if given), as a view; `model` itself is untouched."""
    model = unwrap(model)  # never a wrapper's forward, which runs the model itself (wrappers.py)
    target = torch.device(device) if device is not None else None
    if target is not None and target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    if target is not None and target == model_device(model):
        target = None  # nothing to move: the view shares every tensor
    return _view(model, target, {})


@contextmanager
def inference_view(
    model: nn.Module, device: str | torch.device | None = None, *, grad: bool = False
) -> Iterator[tuple[nn.Module, torch.device]]:
    """(eval-mode view of `model` on `device`, that device) under `torch.inference_mode`, or
    with autograd on when `grad` (input gradients; the parameters' `.grad` is the caller's)."""
    view = eval_view(model, device)
    with torch.enable_grad() if grad else torch.inference_mode():
        yield view, torch.device(device) if device is not None else model_device(model)
