"""Faster equivalents for the batched passes: a conv and the eval-mode BatchNorm after it folded
into one conv, and the activation after them run in place.

A conv is a ``nn.Conv2d`` module (zero padding) or an ``F.conv2d`` call on constant weights (timm's
``Conv2dSame``); a BatchNorm is a ``nn.BatchNorm2d`` module or an ``F.batch_norm`` call with
``training=False`` on running statistics (timm's ``BatchNormAct2d``), reading only the conv. The
base pass keeps the model's own (unfolded) values; folding changes the batched results only by
float rounding (~1e-7 relative). The fold is made in float64 and kept in the model's dtype; on CUDA
its weight is channels-last (the windows are: `gather`). An activation that
is the only reader of the folded output (through ``nn.Identity`` steps such as timm's ``drop``) runs
in place on the conv's fresh output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..geometry import bind

__all__ = ["Folds", "find_folds"]

#: activation modules -> their in-place function
_INPLACE_MODULES: dict[type, Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    nn.ReLU: lambda m: F.relu_,
    nn.ReLU6: lambda m: lambda x: F.hardtanh_(x, 0.0, 6.0),
    nn.Hardtanh: lambda m: lambda x: F.hardtanh_(x, m.min_val, m.max_val),
    nn.SiLU: lambda m: lambda x: F.silu(x, inplace=True),
    nn.Hardswish: lambda m: lambda x: F.hardswish(x, inplace=True),
}


@dataclass
class Folds:
    """The folded pairs of a graph: conv node -> its folded call; BN nodes now identities;
    activations that may run in place."""

    conv: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    calls: dict[fx.Node, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)
    bn: set[fx.Node] = field(default_factory=set)
    inplace: dict[fx.Node, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)

    def fast(self, node: fx.Node) -> Callable[..., Any] | None:
        """A faster equivalent of ``node`` on its one input (folded conv, identity BN,
        in-place activation), or None."""
        if node in self.calls:
            return self.calls[node]
        if node in self.bn:
            return _identity
        return self.inplace.get(node)


def find_folds(nodes: list[fx.Node], modules: dict[str, nn.Module], base: dict) -> Folds:
    """Each conv whose only user is an eval-mode BatchNorm on running statistics; ``base`` holds
    the values of the graph's constants (get_attr nodes)."""
    folds = Folds()
    for node in nodes:
        conv = _conv(node, modules, base)
        if conv is None or len(node.users) != 1:
            continue
        bn_node = next(iter(node.users))
        bn = _batch_norm(bn_node, node, modules, base)
        if bn is None:
            continue
        (weight, bias, options), (mean, var, gamma, beta, eps) = conv, bn
        scale = var.double().add(eps).rsqrt()
        if gamma is not None:
            scale = scale * gamma.double()
        shift = -mean.double() * scale
        if beta is not None:
            shift = shift + beta.double()
        w = (weight.double() * scale.view(-1, 1, 1, 1)).to(weight.dtype)
        b = (shift if bias is None else shift + bias.double() * scale).to(weight.dtype)
        fmt = torch.channels_last if w.is_cuda else torch.contiguous_format
        w = w.contiguous(memory_format=fmt)
        folds.conv[node] = (w, b)
        folds.calls[node] = _conv_call(w, b, options)
        folds.bn.add(bn_node)
        act = _sole_activation(bn_node, modules)
        if act is not None:
            folds.inplace[act[0]] = act[1]
    return folds


def _conv(node: fx.Node, modules: dict[str, nn.Module], base: dict) -> Any:
    """(weight, bias, (stride, padding, dilation, groups)) of a 2-D conv on constants, or None."""
    if node.op == "call_module":
        mod = modules[node.target]
        if type(mod) is not nn.Conv2d or mod.padding_mode != "zeros" or len(node.args) != 1:
            return None
        return mod.weight, mod.bias, (mod.stride, mod.padding, mod.dilation, mod.groups)
    if node.op != "call_function" or node.target not in (F.conv2d, torch.conv2d):
        return None
    names = _bound(node)
    if names is None or not node.args or names.get("input") is not node.args[0]:
        return None
    if not _constant(names.get("weight")) or not _constant(names.get("bias")):
        return None
    weight, bias = base.get(names["weight"]), _value(names.get("bias"), base)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        return None
    options = tuple(names.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1)))
    return weight, bias, (*options, int(names.get("groups", 1)))


def _batch_norm(node: fx.Node, src: fx.Node, modules: dict[str, nn.Module], base: dict) -> Any:
    """(mean, var, weight, bias, eps) of an eval-mode BatchNorm reading only ``src``, or None."""
    if node.op == "call_module":
        bn = modules[node.target]
        if type(bn) is not nn.BatchNorm2d or bn.training or bn.running_mean is None:
            return None
        if node.args != (src,) or node.kwargs:
            return None
        return bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps
    if node.op != "call_function" or node.target is not F.batch_norm:
        return None
    names = _bound(node)
    if names is None or names.get("input") is not src or names.get("training") is not False:
        return None
    keys = ("running_mean", "running_var", "weight", "bias")
    if not all(_constant(names.get(k)) for k in keys):
        return None
    mean, var, gamma, beta = (_value(names.get(k), base) for k in keys)
    if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
        return None
    return mean, var, gamma, beta, float(names.get("eps", 1e-5))


def _sole_activation(node: fx.Node, modules: dict[str, nn.Module]) -> Any:
    """(node, in-place function) of the activation that is the only reader of ``node``, through
    identities, or None."""
    while len(node.users) == 1:
        node = next(iter(node.users))
        if node.op == "call_module" and type(modules[node.target]) is nn.Identity:
            continue
        if node.op == "call_module" and type(modules[node.target]) in _INPLACE_MODULES:
            mod = modules[node.target]
            return node, _INPLACE_MODULES[type(mod)](mod)
        if node.op == "call_function" and node.target in (F.relu, torch.relu):
            return (node, F.relu_) if len(node.args) == 1 and not node.kwargs else None
        if node.op == "call_method" and node.target == "relu" and len(node.args) == 1:
            return node, F.relu_
        return None
    return None


def _conv_call(w: torch.Tensor, b: torch.Tensor, options: tuple) -> Callable:
    stride, padding, dilation, groups = options

    def conv(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    return conv


def _bound(node: fx.Node) -> dict[str, Any] | None:
    try:
        return bind(node.op, node.target, node.args, node.kwargs)
    except TypeError:
        return None


def _constant(v: Any) -> bool:
    """None, or a get_attr node (a parameter or buffer of the graph)."""
    return v is None or (isinstance(v, fx.Node) and v.op == "get_attr")


def _value(v: Any, base: dict) -> Any:
    return base.get(v) if isinstance(v, fx.Node) else v


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
