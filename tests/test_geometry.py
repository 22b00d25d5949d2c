"""The shared op-geometry table: pairs, windows, padding, op kinds and argument binding."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_widgets.inspect.geometry import (
    OpKind,
    Pad,
    Window,
    bind,
    classify,
    is_gate,
    is_shift,
    pad_of_call,
    pad_of_module,
    pair,
    tensor_operands,
    tf_same_padding,
    transposed_of_call,
    transposed_of_module,
    transposed_reads,
    window_of_call,
    window_of_module,
)

x = torch.zeros(1, 2, 8, 8)
y = torch.zeros(1, 2, 8, 8)


def test_pair():
    assert pair(3) == (3, 3)
    assert pair((2, 5)) == (2, 5)
    assert pair([4]) == (4, 4)
    assert pair(torch.Size([7, 9])) == (7, 9)


def test_module_windows_string_padding_and_ceil_mode():
    w = window_of_module(nn.Conv2d(2, 2, 4, stride=1, padding="same", dilation=1))
    assert (w.padding, w.end) == ((1, 1), (2, 2))  # PyTorch: total // 2 before
    assert window_of_module(nn.Conv2d(2, 2, 3, padding="valid")).padding == (0, 0)
    w = window_of_module(nn.Conv2d(2, 2, (3, 5), (1, 2), (0, 2), (2, 1)))
    assert w == Window((3, 5), (1, 2), (0, 2), (2, 1), (0, 2), mode="conv")
    pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
    w = window_of_module(pool)
    assert (w.kernel, w.stride, w.padding, w.ceil_mode, w.mode) == (
        (3, 3),
        (2, 2),
        (1, 1),
        True,
        "max",
    )
    for size in [(7, 8), (9, 10), (56, 57)]:
        assert w.output_size(size) == tuple(pool(torch.zeros(1, 1, *size)).shape[-2:])
    assert window_of_module(nn.AvgPool2d(2)).stride == (2, 2)
    assert window_of_module(nn.ReLU()) is None


def test_tf_same_padding_matches_timm():
    timm_layers = pytest.importorskip("timm.layers")
    for size, k, s in [((7, 8), 3, 2), ((224, 224), 5, 2), ((15, 15), 3, 1), ((8, 8), 2, 2)]:
        conv = timm_layers.Conv2dSame(1, 1, k, stride=s)
        w = window_of_module(conv, size)
        assert classify("call_module", None, conv) is OpKind.WINDOW
        before, after = tf_same_padding(size, (k, k), (s, s), (1, 1))
        assert (w.padding, w.end) == (before, after)
        out = conv(torch.zeros(1, 1, *size))
        assert w.output_size(size) == tuple(out.shape[-2:])
    # StdConv2d has a forward of its own (weight standardisation): traced, not a table window
    assert classify("call_module", None, timm_layers.StdConv2d(1, 1, 3)) is OpKind.UNKNOWN
    assert window_of_module(timm_layers.StdConv2d(1, 1, 3)) is None


def test_functional_windows_positional_and_keyword():
    weight = torch.zeros(2, 2, 3, 3)
    a = window_of_call(F.conv2d, (x, weight, None, 2, 1))
    b = window_of_call(F.conv2d, (), {"input": x, "weight": weight, "stride": 2, "padding": 1})
    assert a == b and (a.kernel, a.stride, a.padding) == ((3, 3), (2, 2), (1, 1))
    m = window_of_call(torch.max_pool2d, (x, 3, 2, 1, 1, True))
    assert (m.kernel, m.stride, m.padding, m.ceil_mode, m.mode) == (
        (3, 3),
        (2, 2),
        (1, 1),
        True,
        "max",
    )
    avg = window_of_call(F.avg_pool2d, (x,), {"kernel_size": 2})
    assert (avg.stride, avg.mode) == ((2, 2), "avg")
    assert window_of_call(F.relu, (x,)) is None


def test_padding():
    assert pad_of_call(F.pad, (x, (1, 2, 3, 4)), {"value": 1.0}) == Pad(3, 4, 1, 2, "constant", 1.0)
    assert pad_of_call(F.pad, (), {"input": x, "pad": [1, 1], "mode": "reflect"}).mode == "reflect"
    assert pad_of_module(nn.ZeroPad2d((0, 1, 0, 1))) == Pad(0, 1, 0, 1)
    assert pad_of_module(nn.ReflectionPad2d(2)).mode == "reflect"


def test_op_kinds():
    module = lambda m: classify("call_module", None, m)  # noqa: E731
    assert module(nn.ReLU()) is OpKind.POINTWISE
    assert module(nn.BatchNorm2d(2).eval()) is OpKind.POINTWISE
    assert module(nn.BatchNorm2d(2).train()) is OpKind.POINTWISE_GEOMETRIC
    assert module(nn.GroupNorm(1, 2)) is OpKind.POINTWISE_GEOMETRIC
    assert module(nn.Dropout().train()) is OpKind.POINTWISE_GEOMETRIC
    assert module(nn.Dropout().eval()) is OpKind.POINTWISE
    assert module(nn.LayerNorm(2)) is OpKind.LAST_DIM
    assert module(nn.Sequential()) is OpKind.UNKNOWN

    class MyReLU(nn.ReLU):  # keeps ReLU's forward
        pass

    class Odd(nn.ReLU):
        def forward(self, x):
            return x.flip(-1)

    assert module(MyReLU()) is OpKind.POINTWISE
    assert module(Odd()) is OpKind.UNKNOWN
    fn = lambda f, **b: classify("call_function", f, bound=b)  # noqa: E731
    assert fn(torch.relu) is fn(F.relu) is OpKind.POINTWISE
    assert fn(F.dropout, training=True) is OpKind.POINTWISE_GEOMETRIC
    assert fn(F.group_norm) is OpKind.POINTWISE_GEOMETRIC
    assert fn(operator.add) is fn(torch.add) is OpKind.BINARY
    assert fn(torch.cat) is OpKind.CAT
    assert fn(torch.mean) is OpKind.REDUCE
    assert fn(torch.flatten) is OpKind.RESHAPE
    assert fn(F.interpolate) is OpKind.UPSAMPLE
    assert classify("call_method", "permute") is OpKind.PERMUTE
    assert classify("call_method", "mean") is OpKind.REDUCE
    assert classify("call_method", "sigmoid") is OpKind.POINTWISE
    assert classify("call_method", "frobnicate") is OpKind.UNKNOWN
    assert is_gate("call_function", operator.mul) and is_gate("call_method", "mul")
    assert not is_gate("call_function", operator.add)


def test_bind_keyword_and_positional_calls():
    cat = bind("call_function", torch.cat, (), {"tensors": [x, y], "dim": 1})
    assert cat["dim"] == 1 and [n for n, _ in tensor_operands(cat)] == ["tensors[0]", "tensors[1]"]
    assert bind("call_function", torch.cat, ([x, y], 1))["dim"] == 1
    assert bind("call_function", torch.cat, ([x, y],))["dim"] == 0  # the default
    assert bind("call_function", torch.relu, (), {"input": x})["input"] is x
    add = bind("call_function", torch.add, (x,), {"other": y})
    assert add["input"] is x and add["other"] is y
    assert bind("call_function", operator.add, (x, y))["other"] is y
    mean = bind("call_function", torch.mean, (x, (2, 3)), {"keepdim": True})
    assert mean["dim"] == (2, 3) and mean["keepdim"] is True
    assert bind("call_method", "mean", (x,), {"dim": (2, 3)})["dim"] == (2, 3)
    assert bind("call_method", "view", (x, 1, -1))["shape"] == (1, -1)
    assert bind("call_method", "view", (x, (1, -1)))["shape"] == (1, -1)
    assert bind("call_method", "permute", (x, 0, 2, 3, 1))["dims"] == (0, 2, 3, 1)
    assert bind("call_method", "add_", (x, y))["other"] is y
    assert bind("call_method", "chunk", (x, 2), {"dim": 1})["dim"] == 1
    assert bind("call_function", F.relu, (x,))["inplace"] is False
    interp = bind("call_function", F.interpolate, (x,), {"scale_factor": 2})
    assert interp["mode"] == "nearest" and interp["scale_factor"] == 2
    with pytest.raises(TypeError):
        bind("call_function", torch.relu, (x, y, y))


def test_transposed_convolutions_and_shifts():
    up = nn.ConvTranspose2d(2, 2, (4, 2), stride=2, padding=(1, 0), dilation=(1, 2))
    assert classify("call_module", None, up) is OpKind.TRANSPOSED
    assert classify("call_function", F.conv_transpose2d) is OpKind.TRANSPOSED
    w = transposed_of_module(up)
    assert (w.kernel, w.stride, w.padding, w.dilation) == ((4, 2), (2, 2), (1, 0), (1, 2))
    got = transposed_of_call(F.conv_transpose2d, (x, up.weight), {"stride": 2, "padding": (1, 0)})
    assert (got.kernel, got.stride, got.padding, got.dilation) == ((4, 2), (2, 2), (1, 0), (1, 1))
    assert transposed_of_module(nn.Conv2d(2, 2, 3)) is None
    # rows: o = 2i - 1 + k, k < 4: unit 0 reads units -1 (padding) and 0, unit 1 reads 0 and 1
    assert transposed_reads(w, 4, 0) == [(-1, 0), (0, 1), (0, 1), (1, 2)]
    # columns: o = 2i + 2k, k < 2: odd units read nothing
    assert transposed_reads(w, 4, 1) == [(-1, 0), None, (0, 1), None]
    assert is_shift("call_function", operator.sub) and is_shift("call_method", "__rsub__")
    assert not is_shift("call_function", operator.mul) and not is_gate("call_method", "sub")
