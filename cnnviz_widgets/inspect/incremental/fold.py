"""Faster equivalents for the batched passes: Conv2d -> BatchNorm2d (eval) folded into one conv.

The base pass keeps the model's own (unfolded) values; folding changes the batched results only
by float rounding (~1e-7 relative). A ReLU right after a folded pair runs in place on the conv's
fresh output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["Folds", "find_folds"]


@dataclass
class Folds:
    """The folded pairs of a graph: conv node -> (weight, bias); BN nodes now identities;
    ReLUs that may run in place."""

    modules: dict[str, nn.Module] = field(default_factory=dict)
    conv: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    bn: set[fx.Node] = field(default_factory=set)
    relu_inplace: set[fx.Node] = field(default_factory=set)

    def fast(self, node: fx.Node) -> Callable[..., Any] | None:
        """A faster equivalent of ``node`` on its one input (folded conv, identity BN,
        in-place ReLU), or None."""
        if node in self.conv:
            mod = self.modules[node.target]
            w, b = self.conv[node]

            def conv(x: torch.Tensor) -> torch.Tensor:
                return F.conv2d(x, w, b, mod.stride, mod.padding, mod.dilation, mod.groups)

            return conv
        if node in self.bn:
            return _identity
        if node in self.relu_inplace:
            return F.relu_
        return None


def find_folds(nodes: list[fx.Node], modules: dict[str, nn.Module]) -> Folds:
    """Conv2d (zero padding) whose only user is an eval-mode BatchNorm2d with running stats."""
    folds = Folds(modules)
    for node in nodes:
        if node.op != "call_module" or type(modules[node.target]) is not nn.Conv2d:
            continue
        conv = modules[node.target]
        users = list(node.users)
        if conv.padding_mode != "zeros" or len(users) != 1:
            continue
        bn_node = users[0]
        if bn_node.op != "call_module" or len(bn_node.all_input_nodes) != 1:
            continue
        bn = modules[bn_node.target]
        if type(bn) is not nn.BatchNorm2d or bn.training or bn.running_mean is None:
            continue
        scale = bn.running_var.double().add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
        w = (conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
        b = shift if conv.bias is None else shift + conv.bias.double() * scale
        fmt = torch.channels_last if w.is_cuda else torch.contiguous_format
        folds.conv[node] = (w.contiguous(memory_format=fmt), b.to(conv.weight.dtype))
        folds.bn.add(bn_node)
        bn_users = list(bn_node.users)
        if len(bn_users) == 1 and _is_relu(bn_users[0], modules):
            folds.relu_inplace.add(bn_users[0])
    return folds


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu) and len(node.args) == 1
    return node.op == "call_method" and node.target == "relu" and len(node.args) == 1


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
