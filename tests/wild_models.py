"""Small CIFAR-sized CNNs written the way popular CIFAR model collections write them.

Each class below is a pattern that plain ``torch.fx`` symbolic tracing cannot follow (issue #19,
"trace what real code does"): a module built inside ``forward``, a shape read through
``x.data.size()``, cells called with ``(x, None)`` tuples that branch on them, squeeze-excite
gates pooled with a size read from the tensor or flattened through a Linear and expanded back,
TorchScript blocks, and a block that branches on values (opaque to any tracer). Every model
takes (N, 3, 32, 32) and returns (N, 10) logits; channels are few so that the tests stay fast.
:data:`WILD` lists them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------- a module built in forward


class _InForwardBlock(nn.Module):
    """A basic residual block whose activations are modules made on every call."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        out = nn.ReLU(inplace=True)(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return nn.ReLU(inplace=True)(out + self.shortcut(x))


class InForwardModules(nn.Module):
    """``nn.ReLU(inplace=True)(a + b)`` and ``nn.MaxPool2d(2)(x)`` made inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = _InForwardBlock(8, 8)
        self.layer2 = _InForwardBlock(8, 16, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.ReLU()(self.stem(x))
        x = nn.MaxPool2d(2)(x)
        x = self.layer2(self.layer1(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ------------------------------------------------------ a shuffle reading x.data.size()


class _Shuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.data.size()
        g = self.groups
        return x.view(n, g, int(c / g), h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class _ShuffleUnit(nn.Module):
    """ShuffleNet's unit: grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; add or concat."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int = 2) -> None:
        super().__init__()
        self.stride = stride
        mid = c_out // 2
        self.conv1 = nn.Conv2d(c_in, mid, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.shuffle = _Shuffle(groups)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out - (c_in if stride == 2 else 0), 1, groups=groups)
        self.bn3 = nn.BatchNorm2d(self.conv3.out_channels)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.shuffle(out)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        return F.relu(torch.cat([out, res], 1)) if self.stride == 2 else F.relu(out + res)


class DataSizeShuffle(nn.Module):
    """A ShuffleNet-like net whose channel shuffle reads its sizes with ``x.data.size()``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.unit1 = _ShuffleUnit(8, 16, stride=2)
        self.unit2 = _ShuffleUnit(16, 16, stride=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out = F.relu(self.stem(x))
        out = self.unit2(self.unit1(out))
        out = F.avg_pool2d(out, 16)
        return self.fc(out.view(out.size(0), -1))


# ------------------------------------------------- cells called with (x, None) tuples


class _Cell(nn.Module):
    """A cell taking (input, previous input); the previous one may be None, or at another
    resolution (then it is reduced first)."""

    def __init__(self, c_in: int, c_prev: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
        )
        self.reduce = nn.Conv2d(c_prev, c_out, 1, stride=2, bias=False)
        self.match = nn.Conv2d(c_prev, c_out, 1, bias=False)

    def forward(self, inputs):
        x, prev = inputs
        out = self.body(x)
        if prev is not None:
            if prev.shape[-1] != out.shape[-1]:
                prev = self.reduce(prev)
            elif prev.size(1) != out.size(1):
                prev = self.match(prev)
            out = out + prev
        return out, x


class TupleCells(nn.Module):
    """Cells called as ``cell((x, None))`` then ``cell((out, prev))``, branching on both."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.cell1 = _Cell(8, 8, 8)
        self.cell2 = _Cell(8, 8, 16)
        self.cell3 = _Cell(16, 8, 16, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        out, prev = self.cell1((x, None))
        out, prev = self.cell2((out, prev))
        out, _ = self.cell3((out, prev))
        return self.fc(out.mean((2, 3)))


# ---------------------------------------------------------------- squeeze-excite gates


class _SEPoolBlock(nn.Module):
    """A residual block gated as ``F.avg_pool2d(out, out.size(2))`` -> 1x1 convs -> sigmoid."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.fc1 = nn.Conv2d(c_out, c_out // 4, 1)
        self.fc2 = nn.Conv2d(c_out // 4, c_out, 1)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        w = F.avg_pool2d(out, out.size(2))
        w = F.relu(self.fc1(w))
        w = torch.sigmoid(self.fc2(w))
        out = out * w
        out += self.shortcut(x)
        return F.relu(out)


class SEPoolSize(nn.Module):
    """Squeeze-excite blocks pooled with a kernel read from the map's size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.layer1 = _SEPoolBlock(8, 8)
        self.layer2 = _SEPoolBlock(8, 16, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out = F.relu(self.bn(self.stem(x)))
        out = self.layer2(self.layer1(out))
        out = F.avg_pool2d(out, 16)
        return self.fc(out.view(out.size(0), -1))


class _SELinearBlock(nn.Module):
    """A conv block gated through Linear layers: pool -> view(N, C) -> Linear -> ReLU ->
    Linear -> sigmoid -> view(N, C, 1, 1) -> expand_as(out). `pool` is "mean" (``out.mean((2,
    3))``) or "avg_pool" (``F.avg_pool2d(out, out.size(2)).view(n, c)``)."""

    def __init__(self, c_in: int, c_out: int, stride: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.fc1 = nn.Linear(c_out, c_out // 4)
        self.fc2 = nn.Linear(c_out // 4, c_out)

    def forward(self, x):
        out = F.relu(self.bn(self.conv(x)))
        n, c, _, _ = out.size()
        w = out.mean((2, 3)) if self.pool == "mean" else F.avg_pool2d(out, out.size(2)).view(n, c)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w)))).view(n, c, 1, 1)
        return out * w.expand_as(out)


class SELinearExpand(nn.Module):
    """Two squeeze-excite gates written with Linear layers and ``expand_as``."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = _SELinearBlock(3, 8, 1, "mean")
        self.block2 = _SELinearBlock(8, 16, 2, "avg_pool")
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out = self.block2(self.block1(x))
        out = F.relu(self.conv(out))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# ------------------------------------------------------------------ TorchScript blocks


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch.jit.script_method is deprecated in recent torch

    class _ScriptedBasic(torch.jit.ScriptModule):
        """A residual block written as a ``torch.jit.ScriptModule`` subclass."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        @torch.jit.script_method
        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + x)


class _PythonDown(nn.Module):
    """A downsampling block, scripted with ``torch.jit.script`` inside the model."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 2, 1)
        self.pool = nn.MaxPool2d(3, 1, 1)

    def forward(self, x):
        return self.pool(F.relu(self.conv(x)))


class TorchScriptBlocks(nn.Module):
    """A Python model holding a ScriptModule subclass and a ``torch.jit.script``-ed block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block1 = _ScriptedBasic(8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script is deprecated in recent torch
            self.block2 = torch.jit.script(_PythonDown(8, 16))
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.block2(self.block1(x))
        x = F.relu(self.conv(x))
        return self.fc(x.mean((2, 3)))


# ----------------------------------------------------- a block that branches on values


class _ValueBranch(nn.Module):
    """A block whose forward branches on its input's values: no tracer follows it, so it
    stays opaque (its geometry, and its layers', are measured)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 2, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, (3, 5), 1, (1, 2))
        self.pool = nn.MaxPool2d(2, 1)

    def forward(self, x):
        out = F.relu(self.conv1(x))
        if out.mean() > 100:  # never, on images of this scale
            out = out / out.mean()
        return self.pool(self.conv2(out))


class ValueBranch(nn.Module):
    """A Python block that stays untraceable (control flow on values) between plain layers."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = _ValueBranch(8, 16)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.conv(self.block(x)))
        return self.fc(x.amax((2, 3)))


#: name -> builder
WILD: dict[str, Callable[[], nn.Module]] = {
    "in_forward_modules": InForwardModules,
    "data_size_shuffle": DataSizeShuffle,
    "tuple_cells": TupleCells,
    "se_pool_size": SEPoolSize,
    "se_linear_expand": SELinearExpand,
    "torchscript_blocks": TorchScriptBlocks,
    "value_branch": ValueBranch,
}
