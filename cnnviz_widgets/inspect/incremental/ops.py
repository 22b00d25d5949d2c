"""What the engine reads of an op: its action, from the one table in `..geometry`, and its window.

`action` says how the engine computes a node that an occluding patch reaches:

- WINDOW: conv, max / average pooling, constant padding, described by a `WindowSpec`;
- POINTWISE: exact at each position (geometry's POINTWISE: activations, eval-mode BatchNorm);
- BINARY / CAT: elementwise over maps, channel concatenation: the union of the rectangles;
- GLOBAL: reshapes, reductions over rows or columns, adaptive pooling, linear: the whole map
  by nature, computed in full without a warning (a reduction over channels that keeps the dim
  is POINTWISE);
- UNKNOWN: everything else (statistics over the map, permutes, indexing, upsampling, ops no
  table knows): computed in full from there on, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..geometry import (
    OpKind,
    Pad,
    Window,
    bind,
    classify,
    pad_of_call,
    pad_of_module,
    window_of_call,
    window_of_module,
)

WINDOW, POINTWISE, BINARY, CAT, GLOBAL, UNKNOWN = (
    "window", "pointwise", "binary", "cat", "global", "unknown"
)  # fmt: skip

K = OpKind

#: geometry's kind -> the engine's action; a kind not here is UNKNOWN (POINTWISE_GEOMETRIC too:
#: its statistics over the whole map change with any patch, so no rectangle stays exact);
#: REDUCE depends on its dims (`_reduce_action`)
ACTIONS: dict[OpKind, str] = {
    K.WINDOW: WINDOW,
    K.PAD: WINDOW,
    K.POINTWISE: POINTWISE,
    K.BINARY: BINARY,
    K.CAT: CAT,
    **dict.fromkeys((K.RESHAPE, K.ADAPTIVE_POOL, K.LAST_DIM, K.SHAPE, K.GLOBAL), GLOBAL),
}


def action(
    node: fx.Node, modules: dict[str, nn.Module], base: dict[fx.Node, Any]
) -> tuple[str, WindowSpec | None]:
    """How the engine computes ``node`` (see the module's docstring), with its window if any."""
    if node.op == "call_module":
        kind = classify(node.op, node.target, modules[node.target])
    elif node.op == "call_function":
        kind = classify(node.op, node.target, bound=_bind(node))
    else:
        kind = classify(node.op, node.target)
    if kind is K.REDUCE:
        return _reduce_action(node, base), None
    act = ACTIONS.get(kind, UNKNOWN)
    if act != WINDOW:
        return act, None
    spec = window_spec(node, modules, base)
    return (WINDOW, spec) if spec is not None else (UNKNOWN, None)


def _reduce_action(node: fx.Node, base: dict[fx.Node, Any]) -> str:
    """A reduction of a map over its rows or columns is GLOBAL; over channels only, keeping the
    dim (CBAM's channel mean), it is POINTWISE: exact at each position."""
    names = _bind(node) or {}
    x = value(names.get("input"), base)
    if "other" in names:  # torch.max(a, b): elementwise, not a reduction
        return UNKNOWN
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return GLOBAL
    dim = names.get("dim")
    if dim is None or dim == ():
        return GLOBAL
    dims = {int(d) % 4 for d in (dim if isinstance(dim, (tuple, list)) else [dim])}
    if dims != {1}:
        return GLOBAL
    # max / min over a dim give (values, indices): not a map
    keep = names.get("keepdim") is True and isinstance(base.get(node), torch.Tensor)
    return POINTWISE if keep else UNKNOWN


def op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """How the warning names an op: "GroupNorm (norm)", "Tensor.permute (permute)", ..."""
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} ({node.target})"
    if node.op == "call_method":
        return f"Tensor.{node.target} ({node.name})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"{name} ({node.name})"


def _bind(node: fx.Node) -> dict[str, Any] | None:
    try:
        return bind(node.op, node.target, node.args, node.kwargs)
    except TypeError:
        return None


def bound(node: fx.Node, name: str, default: Any = None) -> Any:
    """Argument ``name`` of a call however it was spelled (:func:`..geometry.bind`)."""
    names = _bind(node)
    return default if names is None else names.get(name, default)


def value(v: Any, base: dict[fx.Node, Any]) -> Any:
    """``v``, or its base value if it is a node."""
    return base[v] if isinstance(v, fx.Node) else v


def spatial(v: Any) -> bool:
    """True for a tensor with a spatial extent (it cannot broadcast against a rectangle)."""
    return isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[-2:].numel() > 1


# --------------------------------------------------------------------------------------------
# windows


@dataclass
class WindowSpec:
    """A sliding-window op as the engine runs it: what it reads (``src``), the window
    (:class:`..geometry.Window`, or a 1x1 one for constant padding) and the op's own values."""

    kind: str  #: "conv", "max", "avg" or "pad"
    src: fx.Node
    window: Window
    value: float = 0.0  #: what the padding reads
    groups: int = 1
    weight_of: Any = None
    bias_of: Any = None
    divisor_override: Any = None

    def weight(self, base: dict[fx.Node, Any]) -> torch.Tensor:
        return value(self.weight_of, base)

    def bias(self, base: dict[fx.Node, Any]) -> torch.Tensor | None:
        return value(self.bias_of, base)


def window_spec(
    node: fx.Node, modules: dict[str, nn.Module], base: dict[fx.Node, Any]
) -> WindowSpec | None:
    """The window of a conv/pool/pad call (module or function, any argument spelling) from
    :mod:`..geometry`, or None when ``node`` is not one the engine computes exactly."""
    if node.op == "call_module":
        mod = modules[node.target]
        if len(node.args) + len(node.kwargs) != 1 or not isinstance(node.args[0], fx.Node):
            return None
        src = node.args[0]
        size = tuple(base[src].shape[-2:]) if isinstance(base.get(src), torch.Tensor) else None
        window = window_of_module(mod, size)
        if window is not None:
            if window.padding_mode != "zeros" or getattr(mod, "return_indices", False):
                return None
            if window.mode == "conv":
                return WindowSpec("conv", src, window, groups=mod.groups,
                                  weight_of=mod.weight, bias_of=mod.bias)  # fmt: skip
            if window.mode in ("max", "avg"):
                return _pool_spec(src, window, getattr(mod, "divisor_override", None))
            return None
        return _pad_spec(src, pad_of_module(mod))
    if node.op != "call_function":
        return None
    names = _bind(node)
    src = names.get("input") if names is not None else None
    if not isinstance(src, fx.Node):
        return None
    values = fx.graph.map_arg((node.args, node.kwargs), lambda n: base.get(n))
    window = window_of_call(node.target, *values)
    if window is None:
        return _pad_spec(src, pad_of_call(node.target, *values))
    if window.mode == "conv":
        return WindowSpec("conv", src, window, groups=int(names.get("groups", 1)),
                          weight_of=names.get("weight"), bias_of=names.get("bias"))  # fmt: skip
    if names.get("return_indices") or window.mode not in ("max", "avg"):
        return None
    if any(isinstance(v, fx.Node) for k, v in names.items() if k != "input"):
        return None
    return _pool_spec(src, window, names.get("divisor_override"))


def _pool_spec(src: fx.Node, window: Window, divisor_override: Any) -> WindowSpec:
    pad_value = float("-inf") if window.mode == "max" else 0.0
    return WindowSpec(window.mode, src, window, value=pad_value, divisor_override=divisor_override)


def _pad_spec(src: fx.Node, pad: Pad | None) -> WindowSpec | None:
    """Constant padding as a 1x1 window with that padding."""
    if pad is None or pad.mode != "constant" or min(pad.top, pad.bottom, pad.left, pad.right) < 0:
        return None
    window = Window((1, 1), (1, 1), (pad.top, pad.left), (1, 1), (pad.bottom, pad.right))
    return WindowSpec("pad", src, window, value=pad.value)
