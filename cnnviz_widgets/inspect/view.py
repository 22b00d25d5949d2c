"""An eval-mode view of the user's model: the same weights, its own flags, hooks and device.

Every computation runs on a view instead of the model the user holds, so the user's object is
never touched: not its training flags, not its device, not its hooks. The view is a structural
copy of the module tree (each module a new object of the same class, its attribute dict
copied) whose parameter and buffer slots hold the user's very tensors, so a weight the user
updates in place is what the next forward computes with, and nothing is copied on the model's
own device. On another device the view holds copies there (made when the view is built); a
device the tensors cannot go to fails while building the view, with the user's model as it was.

The user's own hooks are copied into the view (a weight-norm pre-hook is part of the model);
hooks registered on the view stay on the view. A TorchScript block inside the model is held by
a `ScriptBlock` stand-in (a whole TorchScript model is refused: give the Python module).

`forward(view, batch, name)` runs a view; an image too small for the model ("Output size is
too small" from deep inside torch) becomes a ValueError naming the image's size, the size the
model needs (found by running larger zero images) and the layer that failed.
"""

from __future__ import annotations

import contextlib
import copy
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


class ScriptBlock(nn.Module):
    """A TorchScript block inside a Python model, as a view holds it.

    Its scripted forward runs as it is: on the user's script module where that is in eval mode
    on the view's device, else on an eval-mode copy (TorchScript reads its own flags, which a
    view cannot set without changing the user's). Hooks go on this stand-in (a ScriptModule
    takes none); its children are stand-ins too, so that every layer name resolves, but the
    scripted forward never calls them. Tracing keeps it one opaque call (`opaque_block`,
    `tracing.opaque`); the receptive fields measure its geometry (`receptive.py`).
    """

    opaque_block = True

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.__dict__["script"] = script  # not a submodule: the stand-ins are
        self.training = False
        self._parameters.update(script.named_parameters(recurse=False))
        self._buffers.update(script.named_buffers(recurse=False))
        self._modules.update({k: ScriptBlock(c) for k, c in script.named_children()})

    def forward(self, *args, **kwargs):
        return self.script(*args, **kwargs)


def _script_view(module: torch.jit.ScriptModule, target: torch.device | None) -> ScriptBlock:
    if target is None and not any(m.training for m in module.modules()):
        return ScriptBlock(module)
    script = copy.deepcopy(module).eval()  # the user's keeps its flags (and its device)
    return ScriptBlock(script.to(target) if target is not None else script)


def _view(module: nn.Module, target: torch.device | None, memo: dict) -> nn.Module:
    if id(module) in memo:  # a module used twice in the tree stays one module
        return memo[id(module)]
    if isinstance(module, torch.jit.ScriptModule):
        if not memo:  # the model itself
            raise TypeError(
                f"{type(module).__name__} is a TorchScript module, which cannot be viewed "
                "without changing it; give the Python nn.Module it was scripted from"
            )
        memo[id(module)] = _script_view(module, target)
        return memo[id(module)]
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


def forward(view: nn.Module, batch: torch.Tensor, model_name: str, dataset: bool = False):
    """`view(batch)`; when it raises, `forward_error`'s answer (from the error it raised): an
    image too small for the model names its size, the size needed and the layer that failed."""
    try:
        return view(batch)
    except Exception as err:
        found = forward_error(view, batch, err, model_name, dataset)
        if found is err:
            raise
        raise found from err


#: the largest image (pixels) `forward_error` runs to find the size a model needs
SEARCH_PIXELS = 512 * 512


def _failed_where(view: nn.Module, batch: torch.Tensor) -> tuple[str, str, tuple] | None:
    """Run `view` on `batch` again with hooks on every module: (the innermost module still
    running when it raised, the last one that finished, the first's input shape); None when
    it runs this time. The hooks are the view's own, removed after."""
    running: list[tuple[str, tuple]] = []
    done = [""]

    def pre(name):
        def hook(module, args):
            shape = next((tuple(a.shape) for a in args if isinstance(a, torch.Tensor)), ())
            running.append((name, shape))

        return hook

    def post(name):
        def hook(module, args, output):
            if running and running[-1][0] == name:
                running.pop()
            done[0] = name or done[0]

        return hook

    handles = []
    try:
        for name, module in view.named_modules():
            handles.append(module.register_forward_pre_hook(pre(name)))
            handles.append(module.register_forward_hook(post(name)))
        try:
            view(batch)
        except Exception:
            name, shape = running[-1] if running else ("", ())
            return name, done[0], shape
        return None
    finally:
        for handle in handles:
            handle.remove()


def _runs(view: nn.Module, like: torch.Tensor, h: int, w: int) -> bool:
    try:
        view(torch.zeros(1, like.shape[1], h, w, dtype=like.dtype, device=like.device))
    except Exception:
        return False
    return True


def _smallest_size(view: nn.Module, batch: torch.Tensor) -> int | None:
    """The least s such that a zero image at least s pixels high and wide runs through `view`
    (searched by doubling, then halving the gap), when one of at most `SEARCH_PIXELS` does and
    one twice as large runs too (else the model takes some sizes only, not all from s on)."""
    h, w = batch.shape[-2:]
    low, high = min(h, w), None
    s = 2 * low
    while max(h, s) * max(w, s) <= SEARCH_PIXELS:
        if _runs(view, batch, max(h, s), max(w, s)):
            high = s
            break
        low, s = s, 2 * s
    if high is None:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if _runs(view, batch, max(h, mid), max(w, mid)):
            high = mid
        else:
            low = mid
    return high if _runs(view, batch, max(h, 2 * high), max(w, 2 * high)) else None


def _dims(shape: tuple) -> str:
    return "×".join(map(str, shape))


def forward_error(
    view: nn.Module, batch: torch.Tensor, err: Exception, model_name: str, dataset: bool = False
):
    """What to raise for `err`, which running `view` (a view of a model `model_name`) on
    `batch` (N, C, H, W; a batch of dataset items when `dataset`) raised.

    When the image is too small for the model (a larger zero image runs), a ValueError that
    names the image size, the size the model needs and the layer that failed; otherwise `err`
    itself, with a note naming the image size and that layer. Out-of-memory errors, and errors
    other than RuntimeError and ValueError, are returned as they are (nothing is run again)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    if isinstance(err, (MemoryError, oom)) or batch.ndim != 4:
        return err
    if not isinstance(err, (RuntimeError, ValueError)):  # torch's size errors; not a user's bug
        return err
    try:
        where = _failed_where(view, batch[:1])
        if where is None:  # it runs now: nothing to say about it
            return err
        name, before, shape = where
        size = _smallest_size(view, batch)
    except Exception:  # pragma: no cover - the diagnosis must never hide the error itself
        return err
    h, w = batch.shape[-2:]
    if name:
        layer = f"layer {name!r} failed" + (f" on its {_dims(shape[1:])} input" if shape else "")
    else:
        layer = f"{model_name}.forward failed" + (f" after layer {before!r}" if before else "")
    what = "The dataset's images are" if dataset else "The image is"
    what = what if dataset or len(batch) == 1 else f"The {len(batch)} images are"
    cause = f"{type(err).__name__}: {err}"
    if size is None:
        with contextlib.suppress(AttributeError):  # Python < 3.11: no notes
            err.add_note(f"{what} {h}×{w} (as the model gets it): {layer}")
        return err
    need = f"{size}×{size}" if size > max(h, w) else f"{size} pixels on each side"
    return ValueError(
        f"{what} {h}×{w}, too small for {model_name}: it needs at least {need} here ({layer}: "
        f"{cause}). Give it larger images, e.g. resize them with transforms.Resize({size})"
    )
