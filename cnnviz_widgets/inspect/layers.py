"""Layer catalogue: every module's type and output shape from one dry run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .capture import ActivationCapture, LayerRef, resolve_layer
from .inputs import input_channels, param_dtype
from .kinds import last_step, layer_kind
from .wrappers import unwrap


@dataclass(frozen=True)
class LayerInfo:
    """One module as the forward pass used it; `output_shape` excludes the batch dimension."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    #: "post-activation", "linear" or "gated" (see `inspect.kinds`); None without a tensor output
    kind: str | None = None

    @property
    def is_spatial(self) -> bool:
        """True when the output is a (C, H, W) feature map."""
        return self.output_shape is not None and len(self.output_shape) == 3

    def describe(self) -> str:
        """A short label such as `conv2 · Conv2d · 32×16×16`."""
        shape = "×".join(map(str, self.output_shape)) if self.output_shape else "?"
        return f"{self.name} · {self.type} · {shape}"


def example_input(
    model: nn.Module, input_size: int | tuple[int, int] = (224, 224), channels: int | None = None
) -> torch.Tensor:
    """A zero image of the size the model takes (3 channels unless its first conv says else), in
    the model's parameter dtype (a `.half()` model runs a float16 image)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    c = channels or input_channels(model) or 3
    return torch.zeros(1, c, h, w, dtype=param_dtype(model))


def layer_catalogue(
    model: nn.Module,
    image=None,
    *,
    input_size: int | tuple[int, int] = (224, 224),
    device: str | torch.device | None = None,
    transform: Callable | None = None,
) -> list[LayerInfo]:
    """Every named module the forward pass calls, in call order, with its output shape and
    kind (`inspect.kinds`; judged on `image` where the module's type does not say).

    `image` (any input `to_batch` accepts) sets the input size; otherwise a zero image of
    `input_size` is used. Modules the forward never calls are left out.
    """
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
    if image is None:
        image = example_input(model, input_size)
    modules = dict(model.named_modules())
    names = [name for name in modules if name]
    order: list[str] = []
    # Each output read as it is made, then let go: keeping them all to read them after the
    # forward held every layer's map at once (5.2 GB for a 4000² photo whose forward needs 2.8)
    facts: dict[str, _Output] = {}
    with ActivationCapture(model, [], device=device, transform=transform) as cap:
        for name in names:  # on the view's modules: the model's own stay as they are
            module = cap.modules[name]
            module.register_forward_pre_hook(lambda m, a, name=name: order.append(name))
            module.register_forward_hook(lambda m, a, out, name=name: _read(facts, name, out))
        cap(image)
        cap.logits = None
    seen: dict[str, None] = dict.fromkeys(order)
    return [
        LayerInfo(
            name=name,
            type=type(modules[name]).__name__,
            output_shape=facts[name].shape if name in facts else None,
            params=sum(p.numel() for p in modules[name].parameters(recurse=True)),
            kind=_kind(modules, name, order, facts.get(name)),
        )
        for name in seen
    ]


@dataclass(frozen=True)
class _Output:
    """What the catalogue keeps of a layer's output: its shape less the batch dimension, and
    its range when floating point (for `inspect.kinds`)."""

    shape: tuple[int, ...]
    low: float | None
    high: float | None


def _read(facts: dict[str, _Output], name: str, output) -> None:
    """Note `output`'s shape and range under `name` (a layer called again: its last output)."""
    if not isinstance(output, torch.Tensor):
        facts.pop(name, None)
        return
    low = high = None
    if output.is_floating_point():
        low, high = (float(v) for v in output.detach().float().aminmax())
    facts[name] = _Output(tuple(output.shape[1:]), low, high)


def _kind(modules: dict[str, nn.Module], name: str, order: list[str], facts) -> str | None:
    if facts is None or facts.low is None:
        return None
    return layer_kind(modules[name], last_step(modules, name, order), facts.low, facts.high)


def spatial_layers(catalogue: list[LayerInfo]) -> list[str]:
    """Names of the layers whose output is a (C, H, W) feature map."""
    return [info.name for info in catalogue if info.is_spatial]


def first_conv(model: nn.Module) -> str:
    """The name of the model's first Conv2d."""
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError(f"{type(model).__name__} has no Conv2d layer")


def spatial_layer(
    model: nn.Module, layer: LayerRef, catalogue: list[LayerInfo]
) -> tuple[str, LayerInfo]:
    """Resolve `layer` and check that it outputs a feature map; errors list the ones that do."""
    name, _ = resolve_layer(model, layer)
    info = next((i for i in catalogue if i.name == name), None)
    if info is None or not info.is_spatial:
        shape = (
            "is never called by the forward pass"
            if info is None
            else (f"has output shape {info.output_shape}, not a (C, H, W) feature map")
        )
        raise ValueError(
            f"Layer {name!r} {shape}; layers with feature maps are: "
            f"{', '.join(spatial_layers(catalogue))}"
        )
    return name, info


_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def default_layer(model: nn.Module, choices: list[dict]) -> str:
    """The deepest post-activation feature map before pooling whose receptive field fits the
    image (AlexNet's conv5 ReLU; ResNet-18's `layer3` at 224², its `layer4` from 435²): the
    map the lecture draws, sparse, with patches smaller than the photo. Without one, the
    deepest that fits, then the deepest post-activation map, then the deepest map.

    `choices`: the layer picker's (`name`, `kind`, `fits`), in call order.
    """
    names = _before_pooling(model, [c["name"] for c in choices])
    facts = {c["name"]: c for c in choices}
    tiers = (
        lambda c: c.get("kind") == "post-activation" and c.get("fits", True),
        lambda c: c.get("fits", True),
        lambda c: c.get("kind") == "post-activation",
        lambda c: True,
    )
    for keep in tiers:
        found = [name for name in names if keep(facts[name])]
        if found:
            return found[-1]
    raise ValueError("The model has no layer with a (C, H, W) output to show")


def _before_pooling(model: nn.Module, names: list[str]) -> list[str]:
    """`names` less pooling layers and containers that end in one (AlexNet's `features`)."""
    modules = dict(model.named_modules())
    kept = []
    for i, name in enumerate(names):
        module = modules.get(name)
        if isinstance(module, _POOLS):
            continue
        if (
            i
            and any(True for _ in module.children())
            and isinstance(modules.get(names[i - 1]), _POOLS)
        ):
            continue
        kept.append(name)
    return kept


def kernel_of(model: nn.Module, layer: str, channels: int) -> tuple[str, nn.Conv2d] | None:
    """The Conv2d that made `layer`'s channels: the layer itself, or the last conv with as many
    output channels at or before it in module order (the conv before a ReLU, pool or block)."""
    found, inside = None, False
    for name, module in model.named_modules():
        within = name == layer or name.startswith(f"{layer}.")  # the layer and its submodules
        if inside and not within:
            break
        inside = inside or within
        if isinstance(module, nn.Conv2d) and module.out_channels == channels:
            found = (name, module)
    return found
