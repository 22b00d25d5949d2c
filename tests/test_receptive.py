"""Receptive fields from the traced graph equal the support of an input gradient.

The reference runs autograd on a copy of the model in which nothing can cancel: every conv
weight is a positive constant, biases are positive, max-pools become average pools of the
same geometry and BatchNorm is an eval-mode positive affine map. Then a unit's input gradient
is non-zero exactly on the pixels that reach it.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models import alexnet, resnet18, vgg16

from cnnviz_widgets.inspect.receptive import (
    ReceptiveField,
    analyse_fields,
    receptive_field,
    receptive_fields,
)


def positive_copy(model: nn.Module) -> nn.Module:
    """A copy whose input gradients cannot cancel (see the module docstring)."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.MaxPool2d:  # timm's MaxPool2dSame: see probe_copy
                assert child.dilation in (1, (1, 1)), "no average pool with dilation"
                pool = nn.AvgPool2d(
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    ceil_mode=child.ceil_mode,
                    count_include_pad=True,
                )
                setattr(parent, name, pool)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.fill_(0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.fill_(0.1)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class _Stop(Exception):
    pass


def gradient_supports(model, layer, input_size, units, channels):
    """For each unit (i, j) of `layer`: the boolean (H, W) support of its input gradient."""
    x = (torch.rand(len(units), channels, *input_size) + 0.5).requires_grad_(True)
    return _supports(model, layer, x, units)


def bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def assert_matches_gradient(model, layers, input_size, *, channels=3, units=None, full=True):
    """The analytic (clipped) box of each unit equals its gradient support (or its bbox).

    `units` defaults to the central unit and the two corners; returns the fields by layer.
    """
    layers = [layers] if isinstance(layers, str) else layers
    fields = receptive_fields(model, input_size, layers, channels=channels)
    positive = positive_copy(model)
    for layer, rf in fields.items():
        _, h_out, w_out = rf.output_shape
        at = units or [(h_out // 2, w_out // 2), (0, 0), (h_out - 1, w_out - 1)]
        supports, out_hw = gradient_supports(positive, layer, input_size, at, channels)
        assert out_hw == (h_out, w_out)
        for (i, j), support in zip(at, supports, strict=True):
            y0, y1, x0, x1 = rf.clipped_box(i, j)
            assert bbox(support) == (y0, y1, x0, x1), (layer, (i, j), rf)
            if full:
                assert bool(support[y0:y1, x0:x1].all()), (layer, (i, j), "holes in the field")
    return fields if len(fields) > 1 else fields[layers[0]]


def test_demo_cnn_fields_match_gradients(demo):
    model, _, _ = demo
    fields = receptive_fields(model, 32)
    assert list(fields) == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3", "avgpool",
    ]  # fmt: skip
    layers = ["conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "avgpool"]
    assert_matches_gradient(model, layers, (32, 32), channels=1)
    assert fields["pool3"].size == (22, 22) and fields["pool3"].stride == (8, 8)


def test_vgg16_known_figures_and_gradients():
    model = vgg16(weights=None).eval()
    fields = receptive_fields(model, (224, 224), ["features.28", "features.30"])
    conv5_3, pool5 = fields["features.28"], fields["features.30"]
    assert (conv5_3.size, conv5_3.stride) == ((196, 196), (16, 16))
    assert (pool5.size, pool5.stride) == ((212, 212), (32, 32))
    # The gradient needs the features only: the same layers, named "0.28" and "0.30" there.
    features = nn.Sequential(model.features)
    for rf in fields.values():
        i = rf.output_shape[1] // 2
        y0, y1, _, _ = rf.box(i, i)
        assert y0 >= 0 and y1 <= 224, "the central unit's field is unclipped"
        name = rf.layer.replace("features.", "0.")
        got = assert_matches_gradient(features, name, (224, 224), units=[(i, i)])
        assert (got.size, got.stride, got.offset) == (rf.size, rf.stride, rf.offset)


def test_alexnet_conv5_known_figures_and_gradients():
    model = alexnet(weights=None).eval()
    fields = assert_matches_gradient(model, ["features.2", "features.10"], (224, 224))
    rf = fields["features.10"]
    assert (rf.size, rf.stride, rf.offset) == ((163, 163), (16, 16), (-66, -66))


def test_resnet18_fields_match_gradients():
    model = resnet18(weights=None).eval()
    fields = assert_matches_gradient(model, ["layer3", "layer4"], (224, 224))
    layer3, layer4 = fields["layer3"], fields["layer4"]
    assert (layer3.size, layer3.stride) == ((211, 211), (16, 16))
    assert layer3.box(7, 7)[0] >= 0, "the central unit's field is unclipped at 224"
    assert (layer4.size, layer4.stride) == ((435, 435), (32, 32))  # clipped at 224
    inner = ["maxpool", "layer1", "layer2.0", "layer2.0.downsample", "layer3.1.conv1"]
    assert_matches_gradient(model, inner, (96, 128))


def test_per_axis_and_non_square_input():
    model = nn.Sequential(
        nn.Conv2d(1, 2, (3, 5), stride=(1, 2), padding=(0, 2), dilation=(2, 1)),
        nn.ReLU(),
        nn.MaxPool2d((2, 3), stride=(2, 1), padding=(1, 0)),
    )
    rf = assert_matches_gradient(model, "2", (20, 27), channels=1, full=False)
    # rows: conv k3 d2 -> 5; pool k2 s2 p1 -> 6, stride 2, offset -1
    # cols: conv k5 s2 p2 -> 5, stride 2, offset -2; pool k3 s1 -> 9
    assert (rf.size, rf.stride, rf.offset) == ((6, 9), (2, 2), (-1, -2))
    assert rf.box(1, 1) == (1, 7, 0, 9)
    assert rf.clipped_box(0, 0) == (0, 5, 0, 7)
    assert rf.describe() == "6×9, stride 2"


class Stack(nn.Module):
    """A small conv net described by a list of blocks, written with functional ops in forward."""

    def __init__(self, blocks, channels=2, width=3):
        super().__init__()
        self.blocks = blocks
        self.layers = nn.ModuleList()
        c = channels
        for kind, *p in blocks:
            if kind == "conv":
                k, s, pad, d = p
                self.layers.append(nn.Conv2d(c, width, k, s, pad, d))
            elif kind == "maxpool":
                k, s, pad, ceil = p
                self.layers.append(nn.MaxPool2d(k, s, pad, ceil_mode=ceil))
                width = c
            elif kind == "avgpool":
                k, s, pad, ceil = p
                self.layers.append(nn.AvgPool2d(k, s, pad, ceil_mode=ceil))
                width = c
            elif kind == "res":
                k1, d, s, k2 = p
                main = nn.Sequential(
                    nn.Conv2d(c, width, k1, s, d * (k1 - 1) // 2, d),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, k2, 1, (k2 - 1) // 2),
                )
                short = nn.Conv2d(c, width, 1, s) if (s != 1 or c != width) else nn.Identity()
                self.layers.append(nn.ModuleDict({"main": main, "short": short}))
            else:  # "cat": two same-padded branches concatenated along channels
                ka, kb = p
                self.layers.append(
                    nn.ModuleDict(
                        {
                            "a": nn.Conv2d(c, width, ka, padding=ka // 2),
                            "b": nn.Conv2d(c, width, kb, padding=kb // 2),
                        }
                    )
                )
                width = 2 * width
            c = width
        self.out = nn.Identity()  # the layer under test: the stack's output

    def forward(self, x):
        for (kind, *_), layer in zip(self.blocks, self.layers, strict=True):
            if kind == "res":
                x = F.relu(layer["main"](x) + layer["short"](x))
            elif kind == "cat":
                x = torch.cat([layer["a"](x), torch.relu(layer["b"](x))], dim=1)
            elif kind == "conv":
                x = F.relu(layer(x))
            else:
                x = layer(x)
        return self.out(x)


odd = st.sampled_from([1, 3, 5])
conv = st.tuples(
    st.just("conv"), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)
)
pool = st.integers(1, 4).flatmap(
    lambda k: st.tuples(
        st.sampled_from(["maxpool", "avgpool"]),
        st.just(k),
        st.integers(1, 3),
        st.integers(0, k // 2),
        st.booleans(),
    )
)
res = st.tuples(st.just("res"), odd, st.integers(1, 2), st.integers(1, 2), odd)
cat = st.tuples(st.just("cat"), odd, odd)
stacks = st.lists(st.one_of(conv, pool, res, cat), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=stacks)
def test_generated_stacks_match_gradients(blocks):
    model = Stack(blocks).eval()
    layer = "out"
    try:
        probe = receptive_field(model, layer, (96, 96))
    except ValueError:
        assume(False)  # the stack shrinks a 96x96 input to nothing
    # A central unit whose field lies inside the input: start it at or after row 0.
    (s, j, o) = probe.size[0], probe.stride[0], probe.offset[0]
    i = max(0, -(o // j))
    size = i * j + o + s + j
    assume(size <= 160)
    rf = receptive_field(model, layer, (size, size))
    assert (rf.size, rf.stride, rf.offset) == (probe.size, probe.stride, probe.offset)
    assume(i < rf.output_shape[1])
    y0, y1, _, _ = rf.box(i, i)
    assert y0 >= 0 and y1 <= size
    supports, _ = gradient_supports(positive_copy(model), layer, (size, size), [(i, i)], 2)
    assert bbox(supports[0]) == rf.box(i, i), (blocks, rf)


def test_functional_window_ops_and_padding():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 1, 3, 3))

        def forward(self, x):
            x = F.pad(x, (1, 2, 3, 0))
            x = F.conv2d(x, self.w, stride=2, padding=1)
            x = F.max_pool2d(x, 3, 1, 1)
            x = F.avg_pool2d(x, 2)
            return x.contiguous()[:, :1]

    got = receptive_field(nn.Sequential(Functional()), "0", 32, channels=1)
    # pad (top 3, left 1): offset -3/-1; conv k3 s2 p1: size 3, stride 2, offset -4/-2;
    # max-pool k3 s1 p1 at stride 2: size 7, offset -6/-4; avg-pool k2 s2: size 9, stride 4.
    assert (got.size, got.stride, got.offset) == ((9, 9), (4, 4), (-6, -4))


def test_no_spatial_output_errors_name_the_layer_and_choices(demo):
    model, _, _ = demo
    with pytest.raises(ValueError, match=r"Layer 'fc' \(Linear.*no spatial output.*conv1, relu1"):
        receptive_field(model, "fc", 32)
    with pytest.raises(ValueError, match=r"Unknown layer 'conv9'"):
        receptive_field(model, "conv9", 32)
    r18 = resnet18(weights=None)
    with pytest.raises(ValueError, match=r"'avgpool'.*pools the whole map into one position"):
        receptive_field(r18, "avgpool", 64)
    with pytest.raises(ValueError, match=r"input_size \(4, 4\)"):
        receptive_field(model, "conv1", 4)  # too small for three 2x2 pools and the head


def test_unknown_operation_is_an_error_not_a_guess():
    class Upsampling(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)
            self.up = nn.Upsample(scale_factor=2)
            self.after = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.after(self.up(self.conv(x)))

    model = Upsampling()
    assert receptive_field(model, "conv", 16).size == (3, 3)
    with pytest.raises(ValueError, match=r"Cannot compute the receptive field of layer 'after'"):
        receptive_field(model, "after", 16)


def test_strides_that_disagree_cannot_be_united():
    class Mismatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, stride=2, padding=1)  # 16x16 -> 8x8, stride 2
            self.b = nn.Conv2d(1, 1, 9)  # 16x16 -> 8x8, stride 1
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(self.a(x) + self.b(x))

    with pytest.raises(
        ValueError, match=r"'out'.*combines maps with strides \(2, 2\) and \(1, 1\)"
    ):
        receptive_field(Mismatch(), "out", 16)


def test_untraceable_model_says_so():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            if x.sum() > 0:  # control flow on values: torch.fx cannot trace this
                x = -x
            return self.conv(x)

    with pytest.raises(ValueError, match=r"torch\.fx could not trace"):
        receptive_field(DataDependent(), "conv", 16)


def test_receptive_field_is_a_frozen_value():
    rf = ReceptiveField("x", (3, 3), (1, 1), (-1, -1), (4, 8, 8), (8, 8))
    with pytest.raises(AttributeError):
        rf.size = (1, 1)
    assert rf.box(0, 0) == (-1, 2, -1, 2)
    assert rf.clipped_box(7, 7) == (6, 8, 6, 8)


def test_keyword_inputs_keep_their_field_and_constants_have_none():
    class Keywords(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
            self.conv = nn.Conv2d(2, 2, 3)
            self.const = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            bias = self.const(torch.ones(1, 1, 1, 1)).sum()
            return self.conv(input=self.body(x)) + bias

    model = Keywords()
    rf = receptive_field(model, "conv", 16, channels=1)
    assert (rf.size, rf.stride, rf.offset) == ((5, 5), (1, 1), (0, 0))
    with pytest.raises(ValueError, match=r"'const' does not depend on the input image"):
        receptive_field(model, "const", 16, channels=1)


# --------------------------------------------------------------------------------------------
# Gates, channels-last blocks, TF "same" padding: the probe of the module docstring, with one
# more rule: a global gate's output is detached (a hook on the gate's activation), so that the
# gradient shows the geometric field, which is what the field claims; `gated` declares the rest.
# Weights are random positive (timm's StdConv2d standardises them, so constants would vanish),
# TF-"same" max pools become TF-"same" average pools, and the run is in double precision.


def _detach_gates(model: nn.Module) -> list:
    from torchvision.ops import SqueezeExcitation

    gates = []
    for m in model.modules():
        if isinstance(m, SqueezeExcitation):
            gates.append(m.scale_activation)
        elif type(m).__name__ in ("SqueezeExcite", "EffectiveSEModule", "SEModule"):
            gates.append(getattr(m, "gate", None) or getattr(m, "gate_fn", None))
    return [g.register_forward_hook(lambda m, a, o: o.detach()) for g in gates if g is not None]


def probe_copy(model: nn.Module) -> nn.Module:
    model = positive_copy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "MaxPool2dSame":
                from timm.layers.pool2d_same import AvgPool2dSame

                setattr(parent, name, AvgPool2dSame(child.kernel_size, child.stride))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = torch.rand(m.weight.shape, generator=generator) + 0.5
                m.weight.copy_(w / m.weight[0].numel())
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                # with equal weights, a sum over channels of a LayerNorm is a constant
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
    return model.double()


def assert_probe_matches(model, layers, size, units=None):
    """Each sampled unit's gradient support has exactly the clipped field as bounding box."""
    fields = receptive_fields(model, size, layers)
    probe = probe_copy(model)
    handles = _detach_gates(probe)
    try:
        for layer, rf in fields.items():
            _, h, w = rf.output_shape
            at = units or [(h // 2, w // 2), (0, 0), (h - 1, w - 1)]
            x = (torch.rand(len(at), 3, *size, dtype=torch.float64) + 0.5).requires_grad_(True)
            supports, _ = _supports(probe, layer, x, at)
            for (i, j), support in zip(at, supports, strict=True):
                assert bbox(support) == rf.clipped_box(i, j), (layer, (i, j), rf)
    finally:
        for handle in handles:
            handle.remove()
    return fields


def _layer_output(model, layer, x):
    out = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, o: out.setdefault("y", o))
    try:
        with torch.enable_grad():
            model(x)
    finally:
        handle.remove()
    return out["y"]


def _supports(model, layer, x, units):
    module = dict(model.named_modules())[layer]
    out = {}

    def hook(m, a, o):
        out["y"] = o
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad(), contextlib.suppress(_Stop):
            model(x)
        y = out["y"]
        score = sum(y[b, :, i, j].sum() for b, (i, j) in enumerate(units))
        (grad,) = torch.autograd.grad(score, x)
    finally:
        handle.remove()
    return grad.abs().sum(1) > 0, tuple(y.shape[-2:])


def test_squeeze_excite_gates_keep_the_maps_field():
    from torchvision.models import mobilenet_v3_small

    model = mobilenet_v3_small(weights=None).eval()
    layers = ["features.1.block.1", "features.1.block.2", "features.4", "features.4.block.2"]
    fields = assert_probe_matches(model, layers, (48, 48))
    assert fields["features.4"].gated and fields["features.1.block.1"].gated
    assert fields["features.4"].describe().endswith("+ global gate")
    conv = receptive_field(model, "features.1.block.0", 64)
    assert not conv.gated and "gate" not in conv.describe()
    assert (fields["features.1.block.1"].size, fields["features.1.block.1"].stride) == (
        conv.size,
        conv.stride,
    )  # the gate widens nothing
    with pytest.raises(ValueError, match=r"'features.1.block.1.avgpool'.*pools the whole map"):
        receptive_field(model, "features.1.block.1.fc1", 64)


def test_convnext_permute_layernorm_and_stochastic_depth():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    # ConvNeXt-T's blocks and downsampling (LayerNorm2d, 2x2 s2), two stages of one block each
    setting = [CNBlockConfig(24, 48, 1), CNBlockConfig(48, None, 1)]
    model = ConvNeXt(setting, stochastic_depth_prob=0.5).eval()
    layers = ["features.1.0", "features.1.0.block.0", "features.2", "features.3.0"]
    fields = assert_probe_matches(model, layers, (64, 64))
    assert fields["features.1.0"].size == (28, 28)  # stem 4x4 s4, then 7x7 depthwise: 4 + 6*4
    # between the permutes the block is channels-last: a field, given on request only
    with pytest.raises(ValueError, match=r"features.1.0.block.3.*H×W×C|HxWxC|channels_last"):
        receptive_field(model, "features.1.0.block.3", 64)
    analysis = analyse_fields(model, 64)
    hwc = analysis.field("features.1.0.block.3", channels_last=True)
    assert hwc.layout == "HWC" and hwc.size == fields["features.1.0"].size
    assert "features.1.0.block.3" not in analysis.names()


def test_timm_same_padding_std_conv_norm_act_and_drop_path():
    timm_layers = pytest.importorskip("timm.layers")
    from timm.layers.pool2d_same import MaxPool2dSame

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = timm_layers.Conv2dSame(3, 4, 3, stride=2)  # pads 0 before, 1 after
            self.pool = MaxPool2dSame(3, stride=2)
            self.std = timm_layers.StdConv2d(4, 4, 3, padding=1)
            self.bn = timm_layers.BatchNormAct2d(4)
            self.norm = timm_layers.LayerNorm2d(4)
            self.se = timm_layers.SqueezeExcite(4, rd_ratio=0.5)
            self.drop = timm_layers.DropPath(0.5)
            self.out = nn.Identity()

        def forward(self, x):
            x = self.pool(self.stem(x))
            return self.out(x + self.drop(self.se(self.norm(self.bn(self.std(x))))))

    model = Block().eval()
    fields = assert_probe_matches(model, ["stem", "pool", "std", "norm", "se", "out"], (16, 15))
    stem = fields["stem"]
    # TF "same" on 16 rows, k3 s2: total pad 1, all of it after; on 15 columns: 2, 1 before
    assert (stem.size, stem.stride, stem.offset) == ((3, 3), (2, 2), (0, -1))
    assert fields["se"].gated and fields["out"].gated and not fields["norm"].gated


def test_spatial_layers_with_a_whole_map_input_say_so_truthfully():
    from torchvision.models import efficientnet_b0

    class GlobalAdd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.out = nn.Identity()

        def forward(self, x):
            y = self.conv(x)
            return self.out(y + y.flatten(2).softmax(-1).view_as(y))  # attention-like

    model = GlobalAdd()
    fields = receptive_fields(model, 10, channels=1)
    assert list(fields) == ["conv", "out"]  # listed, with the whole image as the field
    rf = fields["out"]
    assert rf.kind == "image" and not rf.exact and rf.describe() == "whole image (10×10)"
    assert rf.box(0, 0) == rf.box(7, 7) == (0, 10, 0, 10)
    assert "mix whole rows, columns or the whole map" in rf.note
    assert "combines the map with a value computed from the whole map" in rf.note
    x = (torch.rand(1, 1, 10, 10, dtype=torch.float64) + 0.5).requires_grad_(True)
    (grad,) = torch.autograd.grad(_layer_output(model.double(), "out", x)[0, :, 4, 4].sum(), x)
    assert bbox(grad[0, 0] != 0) == (0, 10, 0, 10)  # and truly so: a corner pixel reaches it
    rf = receptive_field(efficientnet_b0(weights=None), "features.2.0.block.2", 64)
    assert rf.gated and rf.output_shape == (96, 16, 16)  # the (C, H, W) layer after a gate


class Centred(nn.Module):
    """`x - x.mean(dims)` before two convs; `detach` cuts the mean out of the gradient."""

    def __init__(self, dims, detach=False):
        super().__init__()
        self.dims, self.detach = dims, detach
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2)

    def forward(self, x):
        mean = x.mean(dim=self.dims, keepdim=True)
        x = x - (mean.detach() if self.detach else mean)
        return self.conv2(F.relu(self.conv1(x)))


def test_a_subtracted_mean_keeps_the_field_marked_shifted():
    # per image (InstanceNorm without the scale) and per batch (the zoo's batch_mean_input)
    for dims in ((2, 3), (0, 2, 3)):
        fields = receptive_fields(Centred(dims).eval(), 16, ["conv1", "conv2"])
        conv2 = fields["conv2"]
        assert (conv2.size, conv2.stride, conv2.offset) == ((5, 5), (2, 2), (-1, -1))
        assert all(f.shifted and not f.gated and f.exact for f in fields.values())
        assert conv2.describe() == "5×5, stride 2 + global shift"
        # what the flag leaves out, cut: the geometric field is the gradient's support
        probe = positive_copy(Centred(dims, detach=True))
        for layer, rf in fields.items():
            _, h, w = rf.output_shape
            for i, j in [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]:
                supports, _ = gradient_supports(probe, layer, (16, 16), [(i, j)] * 2, 3)
                assert bbox(supports[0]) == rf.clipped_box(i, j), (dims, layer, (i, j), rf)


def test_a_batch_mean_alone_is_pointwise_in_space():
    fields = receptive_fields(Centred(0).eval(), 16, ["conv1", "conv2"])
    assert not any(f.shifted or f.gated for f in fields.values())
    probe = positive_copy(Centred(0)).double()
    for layer, rf in fields.items():
        _, h, w = rf.output_shape
        for i, j in [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]:
            # a unit of the first of three images: x - x.mean(0) reaches every image of the
            # batch, each at the pixels of the unit's field only
            x = (torch.rand(3, 3, 16, 16, dtype=torch.float64) + 0.5).requires_grad_(True)
            out = _layer_output(probe, layer, x)
            (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x)
            for b in range(3):
                assert bbox(grad[b].abs().sum(0) > 0) == rf.clipped_box(i, j), (layer, b, rf)


def assert_bound_holds(model, layers, size, channels=1):
    """Every unit's gradient support lies in its (clipped) box, and the box is the smallest at
    its stride: among units whose box's start the border does not clip, some support starts
    there, and likewise at the end, per axis. Returns the fields by layer."""
    fields = receptive_fields(model, size, layers, channels=channels)
    probe = positive_copy(model).double()
    for layer, rf in fields.items():
        _, h, w = rf.output_shape
        units = [(i, j) for i in range(h) for j in range(w)]
        x = torch.rand(len(units), channels, *size, dtype=torch.float64) + 0.5
        supports, _ = _supports(probe, layer, x.requires_grad_(True), units)
        starts, ends = [set(), set()], [set(), set()]
        for (i, j), support in zip(units, supports, strict=True):
            if not support.any():
                continue  # a unit no input reaches (a transposed conv's kernel < its stride)
            got, box, clipped = bbox(support), rf.box(i, j), rf.clipped_box(i, j)
            assert clipped[0] <= got[0] and got[1] <= clipped[1], (layer, (i, j), got, rf)
            assert clipped[2] <= got[2] and got[3] <= clipped[3], (layer, (i, j), got, rf)
            for a, unit in enumerate((i, j)):
                if box[2 * a] >= 0:
                    starts[a].add(got[2 * a] - unit * rf.stride[a] - rf.offset[a])
                if box[2 * a + 1] <= size[a]:
                    ends[a].add(got[2 * a + 1] - unit * rf.stride[a] - rf.offset[a])
        for a in (0, 1):
            assert min(starts[a]) == 0 and max(ends[a]) == rf.size[a], (layer, a, rf)
    return fields


class Resize(nn.Module):
    """conv k3 s2 (7x7 from 16x16: a field of 3 at stride 2), a resize, a conv k3."""

    def __init__(self, resize, stride=2):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, stride=stride)
        self.resize = resize
        self.up = nn.Identity()
        self.after = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.after(self.up(self.resize(self.conv(x))))


@pytest.mark.parametrize(
    "resize,up,after",
    [
        # nearest x2: units 2m and 2m+1 read unit m, whose window starts at 2m: the windows
        # start at o-1 or o (offset -1, size 3+1); the conv after adds 2
        (nn.Upsample(scale_factor=2), ((4, 4), (1, 1), (-1, -1)), ((6, 6), (1, 1), (-1, -1))),
        # bilinear x2: unit o reads units m-1, m (o = 2m) or m, m+1 (o = 2m+1)
        (
            nn.Upsample(scale_factor=2, mode="bilinear"),
            ((6, 6), (1, 1), (-2, -2)),
            ((8, 8), (1, 1), (-2, -2)),
        ),
        # a size, not a factor: rows x2, columns as they were (exact at stride 2 there)
        (
            lambda x: F.interpolate(x, size=(14, 7), mode="nearest"),
            ((4, 3), (1, 2), (-1, 0)),
            ((6, 7), (1, 2), (-1, 0)),
        ),
    ],
)
def test_upsampling_gives_the_smallest_bound_at_one_stride(resize, up, after):
    model = Resize(resize if isinstance(resize, nn.Module) else _Lambda(resize))
    fields = assert_bound_holds(model, ["conv", "up", "after"], (16, 16))
    assert fields["conv"].exact
    for name, want in (("up", up), ("after", after)):
        rf = fields[name]
        assert (rf.size, rf.stride, rf.offset) == want, (name, rf)
        assert rf.kind == "bound" and not rf.exact
        assert "upsamples the map (7, 7) to" in rf.note and "smallest at one stride" in rf.note
    assert fields["up"].describe().startswith("≤ ")


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_resizing_to_the_same_size_is_exact_and_finer_than_pixels_is_refused():
    same = Resize(nn.Upsample(size=(7, 7), mode="bilinear"))
    rf = receptive_field(same, "up", 16, channels=1)
    assert rf.exact and (rf.size, rf.stride, rf.offset) == ((3, 3), (2, 2), (0, 0))
    finer = Resize(nn.Upsample(scale_factor=2), stride=1)  # 14x14 at stride 1 -> 28x28
    with pytest.raises(
        ValueError,
        match=r"upsamples the map \(14, 14\) to \(28, 28\).*rows step "
        r"by 0.5 input pixels.*less than one",
    ):
        receptive_field(finer, "up", 16, channels=1)


def test_a_one_unit_map_upsampled_reads_one_window_and_joins_a_map_as_a_bound():
    class Broadcast(nn.Module):
        def __init__(self):
            super().__init__()
            self.local = nn.Conv2d(1, 1, 3, padding=1)
            self.whole = nn.Conv2d(1, 1, 4, stride=4)  # 8x8 -> 2x2
            self.squeeze = nn.Conv2d(1, 1, 2)  # 2x2 -> 1x1
            self.up = nn.Upsample(scale_factor=8)  # 1x1 -> 8x8: every unit reads that one
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(self.local(x) + self.up(self.squeeze(self.whole(x))))

    fields = assert_bound_holds(Broadcast(), ["up", "out"], (8, 8))
    up, out = fields["up"], fields["out"]
    assert up.exact and (up.size, up.stride, up.offset) == ((8, 8), (0, 0), (0, 0))
    # the one window [0, 8) seen from units 0..7 at stride 1: from -7 to 8
    assert (out.size, out.stride, out.offset) == ((15, 15), (1, 1), (-7, -7))
    assert out.kind == "bound" and "stride 0" in out.note


class Transposed(nn.Module):
    """conv k3 s2 (a field of 3 at stride 2), a transposed conv, a conv k3 after it."""

    def __init__(self, stride, padding=0, kernel=2, dilation=1, output_padding=0, functional=False):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=stride)
        self.up = nn.ConvTranspose2d(
            2, 2, kernel, stride, padding, output_padding, dilation=dilation
        )
        self.functional = functional
        self.out = nn.Identity()
        self.after = nn.Conv2d(2, 1, 3)

    def forward(self, x):
        x = self.conv(x)
        if self.functional:
            u = self.up
            x = F.conv_transpose2d(
                x, u.weight, u.bias, stride=u.stride, padding=u.padding,
                output_padding=u.output_padding, dilation=u.dilation,
            )  # fmt: skip
            return self.after(self.out(x))
        return self.after(self.up(x))


@pytest.mark.parametrize(
    "kwargs,up",
    [
        # U-Net's 2x2 at stride 2: units 2m and 2m+1 read unit m (as nearest x2 does)
        (dict(stride=2, kernel=2), ((4, 4), (1, 1), (-1, -1))),
        # DCGAN's 4x4 stride 2 padding 1: unit 2m reads m-1, m; unit 2m+1 reads m, m+1
        (dict(stride=2, kernel=4, padding=1), ((6, 6), (1, 1), (-2, -2))),
        # 3x3 stride 2 padding 1 output_padding 1 (a "same" upsampling)
        (dict(stride=2, kernel=3, padding=1, output_padding=1), ((5, 5), (1, 1), (-1, -1))),
        # a kernel smaller than the stride: every other unit reads nothing (bias only)
        (dict(stride=2, kernel=1), ((3, 3), (1, 1), (0, 0))),
        # dilated: unit 2m reads m-2 .. m, odd units nothing
        (dict(stride=2, kernel=3, dilation=2), ((7, 7), (1, 1), (-4, -4))),
        # the same in F.conv_transpose2d
        (dict(stride=2, kernel=4, padding=1, functional=True), ((6, 6), (1, 1), (-2, -2))),
    ],
)
def test_strided_transposed_convolutions_give_the_smallest_bound(kwargs, up):
    functional = kwargs.get("functional", False)
    model = Transposed(**kwargs).eval()
    layer = "out" if functional else "up"
    fields = assert_bound_holds(model, [layer, "after"], (17, 17))
    rf = fields[layer]
    assert (rf.size, rf.stride, rf.offset) == up, rf
    assert rf.kind == "bound" and "transposed convolution at stride 2" in rf.note
    assert fields["after"].kind == "bound"


def test_a_transposed_convolution_at_stride_one_is_an_exact_convolution():
    model = Transposed(stride=1, kernel=3, padding=1).eval()
    rf = assert_matches_gradient(model, "up", (16, 16), channels=1)
    # a conv k3 padded by k-1-p = 1 on the stride-1 field of size 3
    assert rf.exact and (rf.size, rf.stride, rf.offset) == ((5, 5), (1, 1), (-1, -1))
    model = Transposed(stride=1, kernel=3).eval()  # no padding: the map grows by 2
    rf = assert_matches_gradient(model, "up", (16, 16), channels=1)
    assert rf.exact and (rf.size, rf.stride, rf.offset) == ((5, 5), (1, 1), (-2, -2))
    image = nn.ConvTranspose2d(1, 1, 2, stride=2)  # on the image itself: half-pixel steps
    with pytest.raises(ValueError, match=r"step by 0.5 input pixels"):
        receptive_field(nn.Sequential(image), "0", 8, channels=1)


def _grid_layers(model, size):
    from cnnviz_widgets.inspect.layers import layer_catalogue

    return [
        i.name
        for i in layer_catalogue(model, input_size=size)
        if i.is_spatial and i.output_shape[1] * i.output_shape[2] > 1
    ]


def _torchvision(name):
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()


def _timm(name):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False).eval()


@pytest.mark.parametrize(
    "make,name",
    [
        (_torchvision, "mobilenet_v3_small"),
        (_torchvision, "efficientnet_b0"),
        (_torchvision, "regnet_y_400mf"),
        (_torchvision, "convnext_tiny"),
        (_torchvision, "shufflenet_v2_x0_5"),
        (_timm, "tf_efficientnet_lite0"),
        (_timm, "dla34"),
        (_timm, "ese_vovnet19b_dw"),
        (_timm, "convnext_atto"),
        (_timm, "ghostnet_100"),
        (_timm, "hrnet_w18_small"),  # nearest upsampling in the fuse layers: bounds
        (_timm, "mobilevit_xxs"),  # shape-dependent code; after its attention: the whole image
    ],
)
def test_every_grid_layer_has_a_field(make, name):
    model = make(name)
    size = 64
    analysis = analyse_fields(model, size)
    have = set(analysis.names(channels_last=True))
    missing = [n for n in _grid_layers(model, size) if n not in have]
    assert not missing, [str(_why(analysis, n)) for n in missing[:3]]


def _why(analysis, name):
    try:
        analysis.field(name, channels_last=True)
    except ValueError as err:
        return err


def test_adaptive_pool_of_a_one_unit_map_reads_that_unit_everywhere():
    from torchvision.models import vgg11

    model = vgg11(weights=None).eval()
    pool = receptive_field(model, "avgpool", 32)  # 1x1 -> 7x7: every unit reads unit (0, 0)
    before = receptive_field(model, "features.20", 32)
    assert pool.stride == (0, 0) and pool.output_shape == (512, 7, 7)
    assert pool.box(3, 5) == before.box(0, 0)


def test_shape_dependent_code_is_traced_at_the_input_size():
    class ShapeBranch(nn.Module):
        """Branches on a size and slices channels by one (plain fx tracing fails on both)."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3)
            self.conv3 = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            y = self.conv1(x)
            if y.shape[-1] > 4:  # True at 16x16 (y is 8x8), False at 8x8
                y = F.relu(self.conv2(y))
            n = y.size(1)
            return self.conv3(y[:, : n // 2])

    model = ShapeBranch().eval()
    fields = assert_matches_gradient(model, ["conv2", "conv3"], (16, 16))
    assert (fields["conv3"].size, fields["conv3"].stride) == ((11, 11), (2, 2))
    small = receptive_fields(model, (8, 8))  # the other branch at a smaller input
    assert "conv2" not in small and small["conv3"].size == (7, 7)
