"""Hand-written CNNs of the kinds students write, for the model zoo (tests/test_zoo.py).

Each model is small, written the way tutorials and course notebooks write them (functional
calls, ``view`` flattening, in-place ops, keyword calls, shape-dependent code), and returns
(N, num_classes) logits. :data:`HANDWRITTEN` lists them with the input each one takes and what
is special about it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------- tutorials


class CifarTutorialNet(nn.Module):
    """The PyTorch 60-minute blitz CIFAR-10 net: one MaxPool module used twice, ``view``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """LeNet-5 on 1x32x32: tanh, average pooling, a 5x5 conv to 1x1, ``x.view(x.size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, 10)

    def forward(self, x):
        x = self.s2(torch.tanh(self.c1(x)))
        x = self.s4(torch.tanh(self.c3(x)))
        x = torch.tanh(self.c5(x))
        x = x.view(x.size(0), -1)
        return self.out(torch.tanh(self.f6(x)))


# ----------------------------------------------------------------------- in-place ops


class _InplaceBlock(nn.Module):
    """A ResNet basic block written with ``out += identity`` and one shared in-place ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.down is not None:
            identity = self.down(x)
        out += identity
        out = self.relu(out)
        return out


class InplaceResNet(nn.Module):
    """A small ResNet: in-place residual adds and in-place ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.layer1 = _InplaceBlock(16, 16)
        self.layer2 = _InplaceBlock(16, 32, stride=2)
        self.layer3 = _InplaceBlock(32, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class InplaceTricks(nn.Module):
    """In-place ops whose results are dropped but whose mutations matter later.

    ``F.relu(a, inplace=True)`` and ``b.relu_()`` are called for their side effect only;
    ``c.add_(b)`` is a residual in place; ``c.mul_(s)`` runs after ``c`` was read by ``conv4``,
    so ``conv4`` must see the old ``c`` and the sum the new one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 12, 3, padding=1)
        self.conv3 = nn.Conv2d(12, 12, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(12, 12, 3, padding=1)
        self.s = nn.Parameter(torch.rand(1, 12, 1, 1) + 0.5)
        self.conv5 = nn.Conv2d(12, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        a = self.conv1(x)
        F.relu(a, inplace=True)
        b = self.conv2(a)
        b.relu_()
        c = F.avg_pool2d(b, 2)
        c.add_(self.conv3(b))
        d = self.conv4(c)
        c.mul_(self.s)
        e = d + c
        e = self.conv5(e)
        e.clamp_(min=0.0)
        return self.fc(e.mean((2, 3)))


# ------------------------------------------------------------------------ blocks


class _SE(nn.Module):
    """Squeeze-and-excitation: global mean, 1x1 conv down, ReLU, 1x1 conv up, sigmoid gate."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        w = x.mean((2, 3), keepdim=True)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return x * w


class SENet(nn.Module):
    """Conv-BN-ReLU blocks with squeeze-excite gates and a residual around each."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block1 = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), _SE(16)
        )
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.block2 = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), _SE(32)
        )
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = x + self.block1(x)
        x = F.relu(self.down(x))
        x = x + self.block2(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class _LayerNorm2d(nn.Module):
    """LayerNorm over channels of an NCHW map, written with two permutes."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    """Depthwise 7x7, permute, LayerNorm, Linear, GELU, Linear, layer scale, permute, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)  # not 1e-6: the block must matter

    def forward(self, x):
        inp = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return inp + x


class TinyConvNeXt(nn.Module):
    """Patchify stem (4x4 stride 4), ConvNeXt blocks, LN + 2x2 stride-2 downsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), _LayerNorm2d(16))
        self.stage1 = _ConvNeXtBlock(16)
        self.down = nn.Sequential(_LayerNorm2d(16), nn.Conv2d(16, 32, 2, stride=2))
        self.stage2 = nn.Sequential(_ConvNeXtBlock(32), _ConvNeXtBlock(32))
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean([-2, -1])))


class _Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3: int, c5: int, cp: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(c_in, c1, 1)
        self.b3 = nn.Sequential(nn.Conv2d(c_in, c3, 1), nn.ReLU(), nn.Conv2d(c3, c3, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(c_in, c5, 1), nn.ReLU(), nn.Conv2d(c5, c5, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(c_in, cp, 1))

    def forward(self, x):
        return F.relu(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1))


class MiniInception(nn.Module):
    """GoogLeNet-style blocks: four branches concatenated on channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.inc1 = _Inception(16, 8, 12, 4, 4)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inc2 = _Inception(28, 12, 16, 8, 8)
        self.fc = nn.Linear(44, 10)

    def forward(self, x):
        x = self.inc2(self.pool(self.inc1(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


# ------------------------------------------------------------------- call styles


class KeywordCalls(nn.Module):
    """Tensor functions called with keyword arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 8, 5, padding=2)
        self.conv_c = nn.Conv2d(16, 16, 3, padding=1)
        self.conv_d = nn.Conv2d(16, 16, 1)
        self.weight = nn.Parameter(torch.randn(16, 16, 3, 3) * 0.1)
        self.bias = nn.Parameter(torch.randn(16) * 0.1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        a = self.conv_a(x)
        b = self.conv_b(x)
        y = torch.cat(tensors=[a, b], dim=1)
        y = torch.relu(input=y)
        z = self.conv_c(y)
        y = torch.add(z, other=self.conv_d(y))
        y = torch.add(y, z, alpha=0.5)
        y = F.max_pool2d(y, kernel_size=2, stride=2)
        y = F.conv2d(y, weight=self.weight, bias=self.bias, stride=1, padding=1)
        y = torch.mul(input=y, other=torch.sigmoid(input=y))
        y = F.adaptive_avg_pool2d(y, output_size=1)
        return self.fc(torch.flatten(input=y, start_dim=1))


class ExtraArgs(nn.Module):
    """``forward(self, x, scale)``: a second, required argument (occlusion's ``forward_args``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x, scale):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x)) * scale
        x = F.relu(self.conv3(x + scale))
        return self.fc(torch.flatten(F.adaptive_max_pool2d(x, 1), 1))


class BoundArgs(nn.Module):
    """``model(x, *args)`` as a one-argument module: what a user wraps for the other tools."""

    def __init__(self, model: nn.Module, *args) -> None:
        super().__init__()
        self.model = model
        self.args = args

    def forward(self, x):
        return self.model(x, *self.args)


# ----------------------------------------------------------- the batch matters


class BatchStatsBN(nn.Module):
    """BatchNorm2d(track_running_stats=False): batch statistics even in eval mode, so one
    image's output depends on the rest of its batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(12, track_running_stats=False)
        self.conv2 = nn.Conv2d(12, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16, track_running_stats=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class BatchMeanInput(nn.Module):
    """Per-batch input normalisation ``x - x.mean(dim=(0, 2, 3))``: the batch's channel means."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 16 * 16, 10)

    def forward(self, x):
        x = x - x.mean(dim=(0, 2, 3), keepdim=True)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(x.flatten(1))


# ---------------------------------------------------------- shape-dependent code


class ShapeDependent(nn.Module):
    """``F.interpolate(..., size=skip.shape[-2:])``, ``if x.shape[-1] > 8:``, ``x.size()``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.down1 = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(24, 32, 3, stride=2, padding=1)
        self.extra = nn.Conv2d(32, 32, 3, padding=1)
        self.lat = nn.Conv2d(32, 16, 1)
        self.mid = nn.Conv2d(24, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        skip = F.relu(self.stem(x))
        y1 = F.relu(self.down1(skip))
        y = F.relu(self.down2(y1))
        if y.shape[-1] > 4:  # true for 32x32 inputs (y is 8x8)
            y = F.relu(self.extra(y))
        up = F.interpolate(self.lat(y), scale_factor=2, mode="bilinear", align_corners=False)
        up = up + self.mid(y1)
        up = F.interpolate(up, size=skip.shape[-2:], mode="nearest")
        z = up * skip
        n, c = z.size(0), z.size(1)
        return self.fc(z.reshape(n, c, -1).amax(dim=2))


# ------------------------------------------------------------- convolution kinds


class GroupedDilated(nn.Module):
    """Grouped, dilated, depthwise, non-square kernels and strides; run on a non-square image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, (3, 5), stride=(1, 2), padding=(1, 2))
        self.conv2 = nn.Conv2d(16, 32, 3, padding=2, dilation=2, groups=4)
        self.dw = nn.Conv2d(32, 32, 5, stride=2, padding=2, groups=32)
        self.conv3 = nn.Conv2d(32, 32, (1, 3), padding=(0, 2), dilation=(1, 2), groups=8)
        self.conv4 = nn.Conv2d(32, 32, 3, stride=2, padding=1, dilation=(2, 1), bias=False)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu6(self.dw(x))
        x = F.hardswish(self.conv3(x))
        x = F.relu(self.conv4(x))
        return self.fc(x.mean(dim=(2, 3)))


class Pooling(nn.Module):
    """AvgPool with ceil_mode and count_include_pad=False, MaxPool with ceil_mode and padding,
    functional pools, on a map of odd size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.max = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        x = self.avg(F.relu(self.conv1(x)))  # 30 -> 16
        x = self.max(F.relu(self.conv2(x)))  # 16 -> 9 (ceil)
        x = F.avg_pool2d(F.relu(self.conv3(x)), 2, ceil_mode=True)  # 9 -> 5
        x = F.max_pool2d(x, 3, stride=1, padding=1)
        return self.fc(torch.flatten(x, 1))


class FlattenHead(nn.Module):
    """Conv-BN-ReLU-pool x2, then a flatten of the whole 8x8 map into a Linear (no global pool):
    ``torch.flatten(x, 1)`` or ``x.reshape(x.size(0), -1)``."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1) if self.how == "torch.flatten" else x.reshape(x.size(0), -1)
        return self.fc(self.dropout(x))


# ---------------------------------------------------------------- more habits


class SpatialAttention(nn.Module):
    """CBAM's spatial gate: channel mean and max (``dim=1``), a 7x7 conv, sigmoid, multiply."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gate = nn.Conv2d(2, 1, 7, padding=3)
        self.conv2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        avg = torch.mean(x, dim=1, keepdim=True)
        mx, _ = torch.max(x, dim=1, keepdim=True)
        x = x * torch.sigmoid(self.gate(torch.cat([avg, mx], dim=1)))
        x = F.relu(self.conv2(x))
        return self.fc(torch.amax(x, dim=(2, 3)))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel split and shuffle written by hand: ``chunk``, ``view``/``transpose``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.branch = nn.Sequential(
            nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU()
        )
        self.conv2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        x = F.relu(self.conv2(x))
        return self.fc(x.mean([2, 3]))


class MiniUNet(nn.Module):
    """Encoder-decoder with a transposed conv, a skip concatenation and reflect padding."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.enc2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))  # asymmetric
        self.dec = nn.Conv2d(16, 8, (2, 4))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        e1 = F.relu(self.enc1(x))
        e2 = F.relu(self.enc2(e1))
        d = torch.cat([self.up(e2), e1], dim=1)
        d = F.relu(self.dec(self.pad(d)))
        return self.fc(F.adaptive_avg_pool2d(d, 1).view(d.size(0), -1))


class SequentialVGG(nn.Module):
    """A plain ``nn.Sequential`` VGG-ish net with BatchNorm, Dropout and ``nn.Flatten``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout2d(0.2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, 64),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.net(x)


# --------------------------------------------------------------------- the list


def he_init(model: nn.Module, seed: int) -> nn.Module:
    """He-normal weights and small random biases for every conv and linear layer.

    PyTorch's default init shrinks activations layer by layer, so a randomly initialised
    model's logits hardly move when part of the image is occluded; He init keeps their scale.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                fan_in = (
                    m.weight[0].numel()
                    if not isinstance(m, nn.ConvTranspose2d)
                    else (m.weight.shape[0] // m.groups * m.weight[0, 0].numel())
                )
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


@dataclass(frozen=True)
class Handwritten:
    """A hand-written model for the zoo and what it needs."""

    build: Callable[[], nn.Module]
    shape: tuple[int, int, int]  #: (C, H, W) of the input
    #: extra positional arguments after the image (occlusion_map's ``forward_args``)
    forward_args: tuple = ()
    #: False where per-image statistics reach every pixel (a gradient probe then sees the whole
    #: image although the geometric field is smaller)
    probe: bool = True
    notes: str = ""
    patch: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


HANDWRITTEN: dict[str, Handwritten] = {
    "cifar_tutorial": Handwritten(CifarTutorialNet, (3, 32, 32), notes="view(-1, 16*5*5)"),
    "lenet5": Handwritten(LeNet5, (1, 32, 32), notes="view(x.size(0), -1), tanh, avg pool"),
    "inplace_resnet": Handwritten(InplaceResNet, (3, 32, 32), notes="out += identity"),
    "inplace_tricks": Handwritten(
        InplaceTricks, (3, 32, 32), notes="relu_ unused result, mul_ after use"
    ),
    "se_net": Handwritten(SENet, (3, 32, 32), notes="squeeze-excite gates"),
    "convnext_blocks": Handwritten(TinyConvNeXt, (3, 32, 32), notes="permute, LayerNorm, Linear"),
    "inception_concat": Handwritten(MiniInception, (3, 32, 32), notes="torch.cat branches"),
    "keyword_calls": Handwritten(KeywordCalls, (3, 32, 32), notes="cat(tensors=), add(other=)"),
    "extra_forward_args": Handwritten(
        ExtraArgs, (3, 32, 32), forward_args=(1.5,), notes="forward(x, scale)"
    ),
    "batch_stats_bn": Handwritten(
        BatchStatsBN,
        (3, 32, 32),
        probe=False,
        notes="BatchNorm2d(track_running_stats=False) in eval",
    ),
    "batch_mean_input": Handwritten(
        BatchMeanInput, (3, 32, 32), probe=False, notes="x - x.mean(dim=(0, 2, 3))"
    ),
    "shape_dependent": Handwritten(
        ShapeDependent, (3, 32, 32), notes="interpolate(size=x.shape[-2:]), if x.shape[-1] > 4"
    ),
    "grouped_dilated": Handwritten(
        GroupedDilated,
        (3, 30, 40),
        notes="groups, dilation, (3, 5) kernel, non-square image and patch",
        patch=(6, 9),
        stride=(11, 13),
    ),
    "pooling_ceil": Handwritten(
        Pooling, (3, 30, 30), notes="AvgPool ceil_mode/count_include_pad=False"
    ),
    "flatten_torch": Handwritten(
        lambda: FlattenHead("torch.flatten"), (3, 32, 32), notes="torch.flatten(x, 1)"
    ),
    "flatten_reshape": Handwritten(
        lambda: FlattenHead("reshape"), (3, 32, 32), notes="x.reshape(x.size(0), -1)"
    ),
    "spatial_attention": Handwritten(
        SpatialAttention, (3, 32, 32), notes="mean/max over dim=1, 7x7 gate"
    ),
    "channel_shuffle": Handwritten(ChannelShuffle, (3, 32, 32), notes="chunk, view/transpose"),
    "mini_unet": Handwritten(
        MiniUNet, (3, 32, 32), notes="ConvTranspose2d, reflect padding, ZeroPad2d"
    ),
    "sequential_vgg": Handwritten(SequentialVGG, (3, 32, 32), notes="nn.Sequential, Dropout2d"),
}


def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Rescale every conv and linear layer so its output has unit std on `x`, in one pass.

    Each layer is rescaled when the forward reaches it (a forward hook divides its weight,
    bias and output by the output's std), so later layers see already rescaled inputs: the
    logits keep a moderate scale however deep the model (He init alone overflows some).
    """

    def rescale(module, args, out):
        std = float(out.detach().float().std())
        if not math.isfinite(std) or std < 1e-6:
            return None
        with torch.no_grad():
            module.weight.div_(std)
            if module.bias is not None:
                module.bias.div_(std)
        return out / std

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(rescale) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return model
