"""Hook-based activation capture that leaves the model exactly as it found it."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import torch
from torch import nn

from .inputs import model_batch
from .view import forward, inference_view
from .wrappers import unprefixed, unwrap

LayerRef = str | nn.Module


def layer_names(model: nn.Module) -> list[str]:
    """Every named submodule, as `model.named_modules()` spells it."""
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (inspect/wrappers.py)
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, layer: LayerRef) -> tuple[str, nn.Module]:
    """Return (name, module) for a layer given by name or as the module itself."""
    model = unwrap(model)  # the module inside a wrapper; its prefix taken off a name given
    layer = unprefixed(model, layer)
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer and name:
                return name, module
        raise ValueError(f"The module {type(layer).__name__} given as layer is not in the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name or an nn.Module; got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return layer, modules[layer]
    names = layer_names(model)
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"Unknown layer {layer!r};{hint} layers are: {', '.join(names)}")


def _map_tensors(output, fn):
    """Apply `fn` to a tensor or to each tensor of a (nested) tuple/list output."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, (tuple, list)):
        return type(output)(_map_tensors(o, fn) for o in output)
    return output


class ActivationCapture:
    """Forward hooks on named layers for the duration of a `with` block.

    >>> with ActivationCapture(model, ["conv1", "layer1"]) as cap:
    ...     acts = cap(image)          # {"conv1": tensor, "layer1": tensor}
    The forwards run on an eval-mode view of the model (`view.eval_view`, on `device`) in
    inference mode, and the hooks sit on the view's modules: the user's model, its flags,
    hooks and device are never touched, and a background job running the same model (an
    occlusion map being computed) cannot slip its activations in. `modules` maps each name to
    the view's module inside the block. A layer called several times in one forward keeps its
    last output; with `strict=False` a layer the forward never calls is left out of the result
    instead of raising.

    `grad=True` runs with autograd on instead (for input gradients): `input` is the batch the
    view ran on, a leaf that requires grad; the outputs keep their graph to it (a layer called
    several times keeps its last output here too: the one the dataset pass ranked).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerRef | Sequence[LayerRef],
        *,
        device: str | torch.device | None = None,
        transform: Callable | None = None,
        strict: bool = True,
        grad: bool = False,
    ):
        model = unwrap(model)  # torch.compile, DataParallel: the module inside
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        self.model = model
        self.layers = dict(resolve_layer(model, layer) for layer in layers)
        self.outputs: dict[str, torch.Tensor] = {}
        self.logits: torch.Tensor | None = None
        self.device: torch.device | None = None
        self._device = device
        self._transform = transform
        self._strict = strict
        self._grad = grad
        self.input: torch.Tensor | None = None
        self.modules: dict[str, nn.Module] = {}
        self._view: nn.Module | None = None
        self._stack: ExitStack | None = None

    def __enter__(self) -> ActivationCapture:
        with ExitStack() as stack:
            self._view, self.device = stack.enter_context(
                inference_view(self.model, self._device, grad=self._grad)
            )
            self.modules = dict(self._view.named_modules())
            for name in self.layers:
                self.modules[name].register_forward_hook(self._hook(name))  # the view's own
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        self._view, self.modules, self.input = None, {}, None
        if stack is not None:
            stack.__exit__(*exc)

    def _hook(self, name: str):
        def hook(module, args, output):
            # A copy, since later in-place ops (ReLU(inplace=True), `out += identity`) would
            # otherwise rewrite the captured tensor.
            if self._grad:  # the graph kept
                self.outputs[name] = _map_tensors(output, torch.Tensor.clone)
                return
            self.outputs[name] = _map_tensors(output, lambda t: t.detach().clone())

        return hook

    def __call__(self, image, first_index: int | None = None) -> dict[str, torch.Tensor]:
        """Run the model on `image` and return the captured outputs by layer name.

        `first_index`: the dataset index of a batch's first image, for the input errors.
        """
        if self._stack is None:
            raise RuntimeError("Use ActivationCapture inside a `with` block")
        batch = model_batch(self.model, image, self._transform, first_index)
        self.outputs, self.logits = {}, None
        self.input = batch.to(self.device).requires_grad_(self._grad)
        # an image too small for the model: an error naming its size, the size needed, the layer
        out = forward(self._view, self.input, type(self.model).__name__, first_index is not None)
        self.logits = _map_tensors(out, torch.Tensor.detach)
        missing = [name for name in self.layers if name not in self.outputs]
        if missing and self._strict:
            raise ValueError(f"Layer(s) {', '.join(missing)} did not run in the model's forward")
        return dict(self.outputs)


def capture(
    model: nn.Module,
    image,
    layers: LayerRef | Sequence[LayerRef],
    *,
    device: str | torch.device | None = None,
    transform: Callable | None = None,
) -> dict[str, torch.Tensor]:
    """One forward pass; returns {layer name: output} with outputs on the CPU."""
    with ActivationCapture(model, layers, device=device, transform=transform) as cap:
        return {name: _map_tensors(out, torch.Tensor.cpu) for name, out in cap(image).items()}
