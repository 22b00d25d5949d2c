"""One table of op geometry: what each module, function or method call does to a map's grid.

Shared by the receptive fields (`receptive.py`) and the incremental engine (`incremental/ops.py`):

- `pair(v)`: an int or a sequence as (rows, columns).
- `window_of(...)` / `Window`: kernel, stride, padding (before and after), dilation and ceil mode
  of a sliding window: `nn.Conv2d` (string padding "same"/"valid" included), max/avg/LP
  pooling, timm's TF-"same" wrappers (`Conv2dSame`, `MaxPool2dSame`, ...: asymmetric padding
  computed from the input size), and the functional `F.conv2d`, `F.max_pool2d`,
  `F.avg_pool2d` called with positional or keyword arguments. `pad_of(...)` reads explicit
  padding (`nn.ZeroPad2d` ..., `F.pad`).
- `classify(op, target, module=None, bound=None)`: the `OpKind` of an fx node's call.
- `bind(op, target, args, kwargs)`: a call's arguments by parameter name, so that
  `torch.cat(tensors=[a, b], dim=1)`, `torch.relu(input=x)`, `torch.add(a, other=b)` and
  `x.mean((2, 3), keepdim=True)` read alike.
- `transposed_of_module(...)` / `transposed_of_call(...)`: the parameters of a transposed
  convolution (`nn.ConvTranspose2d`, `F.conv_transpose2d`) as a `Window`;
  `transposed_reads(...)`: which input units each of its output units reads.
- `is_gate(...)`: a multiply of a map by a per-channel (N, C, 1, 1) factor; `is_shift(...)`: an
  add or subtract of one (a subtracted mean).

Modules are matched by exact type, or by a subclass that keeps its base's `forward` (a
subclass with its own forward is UNKNOWN here: trace it). The tables keep two kinds of
pointwise apart: POINTWISE ops are exact per position (the value at a pixel depends on the
input at that pixel only: activations, eval-mode BatchNorm, dropout in eval), which is what
incremental recompute needs; POINTWISE_GEOMETRIC ops keep the grid but pool statistics over
the whole map (GroupNorm, InstanceNorm, BatchNorm in training) or are random (training-mode
dropout): a receptive field passes through them, an incremental update does not.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.operator_schemas import get_signature_for_torch_op

Pair = tuple[int, int]


def pair(v: Any) -> Pair:
    """`v` (an int, or a sequence of one or two) as (rows, columns)."""
    if isinstance(v, (tuple, list, torch.Size)):
        if not len(v):
            raise ValueError("an empty sequence is not a pair")
        return int(v[0]), int(v[-1])
    return int(v), int(v)


# --------------------------------------------------------------------------------------------
# op kinds


class OpKind(str, Enum):
    """What an op does to the (H, W) grid of a map."""

    WINDOW = "window"  # conv / pooling: see `window_of`
    PAD = "pad"  # explicit padding: see `pad_of`
    POINTWISE = "pointwise"  # one map in, same grid, value exact per position
    POINTWISE_GEOMETRIC = "pointwise_geometric"  # same grid, statistics over the map (or random)
    BINARY = "binary"  # elementwise over broadcast operands: the union of their fields
    CAT = "cat"  # concatenation (a union along the channel dim)
    SPLIT = "split"  # chunk / split / unbind along a dim
    GETITEM = "getitem"  # indexing a tensor or picking from a tuple
    LAST_DIM = "last_dim"  # Linear / LayerNorm on the last dim(s): pointwise when that is C
    ALONG_DIM = "along_dim"  # softmax-like along `dim`: pointwise when `dim` is a channel dim
    REDUCE = "reduce"  # mean / sum / amax ... over `dim`: global when it covers H or W
    ADAPTIVE_POOL = "adaptive_pool"  # a window when sizes divide; to 1x1 it is global
    PERMUTE = "permute"  # permute / transpose / movedim: the layout changes
    RESHAPE = "reshape"  # view / reshape / flatten: the grid survives only if H, W do
    BROADCAST = "broadcast"  # expand / expand_as / broadcast_to: dims of one unit repeated
    UPSAMPLE = "upsample"  # nearest / bilinear interpolation
    TRANSPOSED = "transposed"  # transposed convolution: see `transposed_of`
    SHAPE = "shape"  # size / dim / numel: not a tensor
    GLOBAL = "global"  # mixes the whole map by nature
    UNKNOWN = "unknown"  # not in the table: trace into it, or give up


K = OpKind

ACTIVATION_MODULES: tuple[type, ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Identity,
)  # fmt: skip

#: Modules by kind (BatchNorm and Dropout are refined by `classify`: mode and statistics).
MODULE_KINDS: dict[type, OpKind] = {
    **dict.fromkeys(ACTIVATION_MODULES, K.POINTWISE),
    nn.Dropout: K.POINTWISE, nn.Dropout2d: K.POINTWISE, nn.AlphaDropout: K.POINTWISE,
    nn.FeatureAlphaDropout: K.POINTWISE,
    nn.BatchNorm2d: K.POINTWISE, nn.SyncBatchNorm: K.POINTWISE,
    nn.LocalResponseNorm: K.POINTWISE,  # across neighbouring channels at one position
    nn.ChannelShuffle: K.POINTWISE, nn.Softmax2d: K.POINTWISE,
    nn.GroupNorm: K.POINTWISE_GEOMETRIC, nn.InstanceNorm2d: K.POINTWISE_GEOMETRIC,
    nn.Conv2d: K.WINDOW, nn.MaxPool2d: K.WINDOW, nn.AvgPool2d: K.WINDOW, nn.LPPool2d: K.WINDOW,
    nn.ZeroPad2d: K.PAD, nn.ConstantPad2d: K.PAD, nn.ReflectionPad2d: K.PAD,
    nn.ReplicationPad2d: K.PAD, nn.CircularPad2d: K.PAD,
    nn.AdaptiveAvgPool2d: K.ADAPTIVE_POOL, nn.AdaptiveMaxPool2d: K.ADAPTIVE_POOL,
    nn.Linear: K.LAST_DIM, nn.LayerNorm: K.LAST_DIM,
    nn.Softmax: K.ALONG_DIM, nn.LogSoftmax: K.ALONG_DIM,
    nn.Flatten: K.RESHAPE, nn.Unflatten: K.RESHAPE,
    nn.Upsample: K.UPSAMPLE, nn.UpsamplingNearest2d: K.UPSAMPLE,
    nn.UpsamplingBilinear2d: K.UPSAMPLE,
}  # fmt: skip


def _torchvision_modules() -> dict[type, OpKind]:
    try:
        from torchvision.ops import FrozenBatchNorm2d, StochasticDepth
        from torchvision.ops.misc import Permute
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return {}
    return {FrozenBatchNorm2d: K.POINTWISE, StochasticDepth: K.POINTWISE, Permute: K.PERMUTE}


MODULE_KINDS.update(_torchvision_modules())

# Tensor methods and functions that only cast, copy or lay out memory: value exact.
_LAYOUT_METHODS = {
    "contiguous", "float", "double", "half", "bfloat16", "to", "type_as", "clone", "detach",
    "cpu", "cuda", "requires_grad_",
}  # fmt: skip

_UNARY = {
    "relu", "relu_", "relu6", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_",
    "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "clip", "clip_", "neg", "neg_",
    "abs", "abs_", "exp", "exp_", "log", "sqrt", "sqrt_", "rsqrt", "square", "reciprocal",
    "hardswish", "hardsigmoid", "silu", "gelu", "erf", "sign", "floor", "ceil", "round",
    "nan_to_num",
}  # fmt: skip
_BINARY = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "pow_", "maximum",
    "minimum", "true_divide", "where", "addcmul", "lerp", "rsub",
    "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__",
    "__rmul__", "__imul__", "__truediv__", "__rtruediv__", "__itruediv__",
}  # fmt: skip
_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm"}
_PERMUTE = {"permute", "transpose", "movedim", "moveaxis", "swapaxes", "swapdims"}
_RESHAPE = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as"}
_SPLIT = {"chunk", "split", "tensor_split", "unbind"}
_SHAPE = {"size", "dim", "numel", "ndimension", "nelement", "stride"}

#: Tensor methods by kind.
METHOD_KINDS: dict[str, OpKind] = {
    **dict.fromkeys(_LAYOUT_METHODS | _UNARY, K.POINTWISE),
    **dict.fromkeys(_BINARY, K.BINARY),
    **dict.fromkeys(_REDUCE, K.REDUCE),
    **dict.fromkeys(_PERMUTE, K.PERMUTE),
    **dict.fromkeys(_RESHAPE, K.RESHAPE),
    **dict.fromkeys(_SPLIT, K.SPLIT),
    **dict.fromkeys(_SHAPE, K.SHAPE),
    "softmax": K.ALONG_DIM, "log_softmax": K.ALONG_DIM,
    "__getitem__": K.GETITEM,
    "expand": K.BROADCAST, "expand_as": K.BROADCAST, "broadcast_to": K.BROADCAST,
}  # fmt: skip


def _functions(names: set[str], *namespaces: Any) -> set[Any]:
    return {getattr(ns, n) for n in names for ns in namespaces if hasattr(ns, n)}


def _torchvision_functions() -> dict[Any, OpKind]:
    try:
        from torchvision.ops import stochastic_depth
    except ImportError:  # pragma: no cover
        return {}
    return {stochastic_depth: K.POINTWISE}


_POINTWISE_F = {
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
    "gelu", "silu", "mish", "hardswish", "hardsigmoid", "hardtanh", "hardtanh_", "sigmoid",
    "tanh", "softplus", "softsign", "logsigmoid", "threshold", "prelu", "dropout",
    "dropout2d", "alpha_dropout", "feature_alpha_dropout", "batch_norm",
    "local_response_norm", "channel_shuffle", "native_channel_shuffle",
}  # fmt: skip

#: Functions by kind (`F.*`, `torch.*`, `operator.*`; dropout / batch_norm refined by mode).
FUNCTION_KINDS: dict[Any, OpKind] = {
    **dict.fromkeys(_functions(_POINTWISE_F | _UNARY, F, torch), K.POINTWISE),
    **dict.fromkeys(_functions({"group_norm", "instance_norm"}, F), K.POINTWISE_GEOMETRIC),
    **dict.fromkeys(_functions(_BINARY - {"rsub"}, torch), K.BINARY),
    torch.rsub: K.BINARY,
    **dict.fromkeys(
        (operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
         operator.iadd, operator.isub, operator.imul, operator.itruediv),
        K.BINARY,
    ),
    operator.neg: K.POINTWISE, operator.pos: K.POINTWISE,
    torch.cat: K.CAT, torch.concat: K.CAT, torch.concatenate: K.CAT,
    **dict.fromkeys(_functions(_REDUCE, torch), K.REDUCE),
    **dict.fromkeys(_functions(_PERMUTE, torch), K.PERMUTE),
    **dict.fromkeys(_functions(_RESHAPE - {"view", "view_as"}, torch), K.RESHAPE),
    **dict.fromkeys(_functions(_SPLIT, torch), K.SPLIT),
    **dict.fromkeys(_functions({"softmax", "log_softmax"}, F, torch), K.ALONG_DIM),
    **dict.fromkeys(_functions({"conv2d", "max_pool2d", "lp_pool2d"}, F, torch), K.WINDOW),
    F.avg_pool2d: K.WINDOW,
    F.pad: K.PAD, torch.constant_pad_nd: K.PAD,
    **dict.fromkeys(
        _functions({"adaptive_avg_pool2d", "adaptive_max_pool2d"}, F, torch), K.ADAPTIVE_POOL
    ),
    F.linear: K.LAST_DIM, F.layer_norm: K.LAST_DIM, torch.layer_norm: K.LAST_DIM,
    F.interpolate: K.UPSAMPLE, F.upsample: K.UPSAMPLE,
    operator.getitem: K.GETITEM,
    torch.broadcast_to: K.BROADCAST,
    getattr: K.SHAPE,
    **_torchvision_functions(),
}  # fmt: skip

#: Binary ops that scale their first operand by the second (a gate when it is (N, C, 1, 1)).
GATE_FUNCTIONS = {operator.mul, operator.imul, torch.mul, torch.multiply}
GATE_METHODS = {"mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__"}


def _kind_of_type(module: nn.Module) -> OpKind:
    cls = type(module)
    if cls in MODULE_KINDS:
        return MODULE_KINDS[cls]
    for base in cls.__mro__[1:]:
        if base in MODULE_KINDS and cls.forward is base.forward:
            return MODULE_KINDS[base]
    return K.UNKNOWN


def classify(
    op: str, target: Any, module: nn.Module | None = None, bound: dict | None = None
) -> OpKind:
    """The kind of an fx node: `op` is "call_module" (give `module`), "call_function" or
    "call_method" (`target` the method name). `bound` (from `bind`) refines calls whose kind
    depends on an argument (dropout or batch_norm with training=True: POINTWISE_GEOMETRIC).
    A TF-"same" window that timm computes in its forward (`Conv2dSame`) is a WINDOW."""
    if op == "call_module":
        assert module is not None, "classify a call_module with its module"
        if _same_window(module) is not None:
            return K.WINDOW
        kind = _kind_of_type(module)
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)) and kind is K.POINTWISE:
            eval_stats = not module.training and module.running_mean is not None
            return K.POINTWISE if eval_stats else K.POINTWISE_GEOMETRIC
        if kind is K.POINTWISE and getattr(module, "training", False) and _random(module):
            return K.POINTWISE_GEOMETRIC
        return kind
    if op == "call_function":
        try:
            kind = FUNCTION_KINDS.get(target, K.UNKNOWN)
        except TypeError:  # an unhashable target
            return K.UNKNOWN
        if kind is K.POINTWISE and bound and bound.get("training") is True:
            return K.POINTWISE_GEOMETRIC  # dropout / batch_norm with batch statistics
        return kind
    if op == "call_method":
        return METHOD_KINDS.get(target, K.UNKNOWN)
    return K.UNKNOWN


def _random(module: nn.Module) -> bool:
    """Dropout-like modules are random in training mode."""
    cls = type(module).__name__
    return "Dropout" in cls or "StochasticDepth" in cls or "DropPath" in cls


def is_gate(op: str, target: Any) -> bool:
    """Whether a BINARY call multiplies (so that a (N, C, 1, 1) operand gates channels)."""
    if op == "call_function":
        return target in GATE_FUNCTIONS
    return op == "call_method" and target in GATE_METHODS


#: Binary ops that add or subtract their operands (a shift when one is (N, C, 1, 1)).
SHIFT_FUNCTIONS = {
    operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub,
    torch.subtract, torch.rsub,
}  # fmt: skip
SHIFT_METHODS = {
    "add", "add_", "sub", "sub_", "subtract", "subtract_", "__add__", "__radd__", "__iadd__",
    "__sub__", "__rsub__", "__isub__",
}  # fmt: skip


def is_shift(op: str, target: Any) -> bool:
    """Whether a BINARY call adds or subtracts (so that a (N, C, 1, 1) operand shifts channels,
    as a subtracted mean does)."""
    if op == "call_function":
        return target in SHIFT_FUNCTIONS
    return op == "call_method" and target in SHIFT_METHODS


# --------------------------------------------------------------------------------------------
# sliding windows


@dataclass(frozen=True)
class Window:
    """A sliding window per axis (rows, columns).

    `padding` is what is added before the first row / column, `padding_end` after the last
    (different for TF "same" and PyTorch "same" with an even extent; `ceil_mode` may read
    further past the end, see `output_size`). `mode` is "conv", "max", "avg" or "lp";
    `padding_mode` "zeros" or the conv's reflect/replicate/circular.
    """

    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair = (1, 1)
    padding_end: Pair | None = None
    ceil_mode: bool = False
    mode: str = "conv"
    padding_mode: str = "zeros"
    count_include_pad: bool = True

    @property
    def end(self) -> Pair:
        """Padding after the last row / column (the same as before unless asymmetric)."""
        return self.padding if self.padding_end is None else self.padding_end

    def extent(self, axis: int) -> int:
        """The span of one window in input units on `axis`: d(k-1)+1."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1

    def output_size(self, size: Pair) -> Pair:
        """The output grid for an input grid of `size`, as PyTorch computes it."""

        def axis(a: int) -> int:
            span = size[a] + self.padding[a] + self.end[a] - self.extent(a)
            if not self.ceil_mode:
                return span // self.stride[a] + 1
            out = -(-span // self.stride[a]) + 1
            # PyTorch: the last window must start inside the input or the before-padding
            return out - 1 if (out - 1) * self.stride[a] >= size[a] + self.padding[a] else out

        return axis(0), axis(1)


def conv_padding(padding: Any, kernel: Pair, dilation: Pair) -> tuple[Pair, Pair]:
    """(before, after) of a Conv2d's `padding`, string ("same"/"valid") or number(s).

    PyTorch's "same" pads total//2 before and the rest after."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        total = (dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1))
        before = (total[0] // 2, total[1] // 2)
        return before, (total[0] - before[0], total[1] - before[1])
    p = pair(padding)
    return p, p


def tf_same_padding(size: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[Pair, Pair]:
    """TensorFlow's "SAME": (before, after) so that the output is ceil(size / stride); the
    odd pixel goes after (timm's `pad_same`)."""
    total = tuple(
        max((math.ceil(size[a] / stride[a]) - 1) * stride[a] + (kernel[a] - 1) * dilation[a]
            + 1 - size[a], 0)
        for a in (0, 1)
    )  # fmt: skip
    before = (total[0] // 2, total[1] // 2)
    return before, (total[0] - before[0], total[1] - before[1])


def _same_window(module: nn.Module) -> str | None:
    """ "tf" for timm's dynamic TF-"same" wrappers (Conv2dSame, MaxPool2dSame, AvgPool2dSame,
    StdConv2dSame, ScaledStdConv2dSame), whose padding depends on the input size."""
    if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return None
    if not type(module).__name__.endswith("Same") or not getattr(module, "same_pad", True):
        return None
    return "tf"


def _pool_stride(stride: Any, kernel: Pair) -> Pair:
    return pair(stride) if stride not in (None, (), []) else kernel


def window_of_module(module: nn.Module, input_size: Pair | None = None) -> Window | None:
    """The window of a Conv2d / MaxPool2d / AvgPool2d / LPPool2d (or a subclass that keeps
    the base's forward), else None: a subclass with a forward of its own (timm's StdConv2d)
    is traced instead. timm's TF-"same" wrappers need the
    `input_size` (H, W) their padding is computed from."""
    same = _same_window(module)
    if same is None and _kind_of_type(module) is not K.WINDOW:
        return None  # not a window, or a subclass with its own forward (trace that)
    if isinstance(module, nn.Conv2d):
        kernel, stride, dilation = (
            pair(module.kernel_size),
            pair(module.stride),
            pair(module.dilation),
        )
        if same:
            if input_size is None:
                raise ValueError(f"{type(module).__name__} pads for its input size: give it")
            before, after = tf_same_padding(input_size, kernel, stride, dilation)
        else:
            before, after = conv_padding(module.padding, kernel, dilation)
        mode = module.padding_mode
        return Window(kernel, stride, before, dilation, after, mode="conv", padding_mode=mode)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel = pair(module.kernel_size)
        stride = _pool_stride(module.stride, kernel)
        dilation = pair(getattr(module, "dilation", 1))
        if same:
            if input_size is None:
                raise ValueError(f"{type(module).__name__} pads for its input size: give it")
            before, after = tf_same_padding(input_size, kernel, stride, dilation)
        else:
            before = after = pair(module.padding)
        is_max = isinstance(module, nn.MaxPool2d)
        return Window(
            kernel, stride, before, dilation, after,
            ceil_mode=bool(module.ceil_mode),
            mode="max" if is_max else "avg",
            count_include_pad=bool(getattr(module, "count_include_pad", True)),
        )  # fmt: skip
    if isinstance(module, nn.LPPool2d):
        kernel = pair(module.kernel_size)
        stride = _pool_stride(module.stride, kernel)
        return Window(kernel, stride, (0, 0), ceil_mode=bool(module.ceil_mode), mode="lp")
    return None


def window_of_call(target: Any, args: Sequence = (), kwargs: dict | None = None) -> Window | None:
    """The window of a functional call (`F.conv2d`, `F.max_pool2d`, `F.avg_pool2d`,
    `F.lp_pool2d` and their `torch.*` twins), arguments positional or keyword; else None."""
    if FUNCTION_KINDS.get(target) is not K.WINDOW:
        return None
    b = bind("call_function", target, args, kwargs or {})
    if target in (F.conv2d, torch.conv2d):
        kernel = pair(tuple(b["weight"].shape[-2:]))
        dilation = pair(b.get("dilation", 1))
        before, after = conv_padding(b.get("padding", 0), kernel, dilation)
        return Window(kernel, pair(b.get("stride", 1)), before, dilation, after)
    kernel = pair(b["kernel_size"])
    stride = _pool_stride(b.get("stride"), kernel)
    if target is F.lp_pool2d:
        return Window(kernel, stride, (0, 0), ceil_mode=bool(b.get("ceil_mode")), mode="lp")
    is_max = target in (F.max_pool2d, torch.max_pool2d)
    padding = pair(b.get("padding", 0))
    return Window(
        kernel, stride, padding,
        pair(b.get("dilation", 1)) if is_max else (1, 1),
        ceil_mode=bool(b.get("ceil_mode", False)),
        mode="max" if is_max else "avg",
        count_include_pad=bool(b.get("count_include_pad", True)),
    )  # fmt: skip


@dataclass(frozen=True)
class Pad:
    """Explicit padding of the last two dims: rows (top, bottom), columns (left, right)."""

    top: int
    bottom: int
    left: int
    right: int
    mode: str = "constant"
    value: float = 0.0


def _pad_tuple(pad: Any) -> Pad:
    p = [int(v) for v in pad] if isinstance(pad, (tuple, list)) else [int(pad)] * 4
    p += [0] * (4 - len(p))
    return Pad(top=p[2], bottom=p[3], left=p[0], right=p[1])


def pad_of_module(module: nn.Module) -> Pad | None:
    """The padding of `nn.ZeroPad2d` / `ConstantPad2d` / `ReflectionPad2d` / ..., else None."""
    if _kind_of_type(module) is not K.PAD:
        return None
    p = _pad_tuple(module.padding)
    name = type(module).__name__
    mode = next((m for m in ("reflect", "replicat", "circular") if m in name.lower()), "constant")
    mode = "replicate" if mode == "replicat" else mode
    value = float(getattr(module, "value", 0.0) or 0.0)
    return Pad(p.top, p.bottom, p.left, p.right, mode, value)


def pad_of_call(target: Any, args: Sequence = (), kwargs: dict | None = None) -> Pad | None:
    """The padding of `F.pad(x, pad, mode, value)` (or `torch.constant_pad_nd`), else None."""
    if FUNCTION_KINDS.get(target) is not K.PAD:
        return None
    b = bind("call_function", target, args, kwargs or {})
    p = _pad_tuple(b["pad"])
    value = b.get("value", 0.0)
    return Pad(p.top, p.bottom, p.left, p.right, b.get("mode", "constant"), float(value or 0.0))


# --------------------------------------------------------------------------------------------
# binding a call's arguments to parameter names

_OPERATOR_PARAMS: dict[Any, tuple[str, ...]] = {
    **dict.fromkeys(
        (operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
         operator.pow, operator.iadd, operator.isub, operator.imul, operator.itruediv,
         operator.matmul),
        ("input", "other"),
    ),
    operator.neg: ("input",), operator.pos: ("input",), operator.getitem: ("input", "index"),
    getattr: ("input", "name"),
}  # fmt: skip

#: Tensor methods whose parameters differ from their `torch.*` function (varargs, no twin).
_METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "view": ("input", "*shape"), "reshape": ("input", "*shape"), "permute": ("input", "*dims"),
    "expand": ("input", "*size"), "repeat": ("input", "*repeats"), "flip": ("input", "*dims"),
    "size": ("input", "dim"), "dim": ("input",), "numel": ("input",),
    "contiguous": ("input", "memory_format"), "to": ("input", "*args"),
    "type_as": ("input", "other"), "view_as": ("input", "other"),
    "expand_as": ("input", "other"),
    "float": ("input",), "double": ("input",), "half": ("input",), "bfloat16": ("input",),
    "unflatten": ("input", "dim", "sizes"),
}  # fmt: skip

_SIGNATURES: dict[Any, list[inspect.Signature] | None] = {}


def _signatures(fn: Any) -> list[inspect.Signature] | None:
    try:
        key = fn if fn.__hash__ is not None else id(fn)
    except AttributeError:  # pragma: no cover
        key = id(fn)
    if key not in _SIGNATURES:
        sigs = None
        try:
            sigs = [inspect.signature(_undispatched(fn))]
        except (TypeError, ValueError):
            try:
                sigs = get_signature_for_torch_op(fn)
            except Exception:  # an op torch has no schema for
                sigs = None
        _SIGNATURES[key] = sigs
    return _SIGNATURES[key]


def _undispatched(fn: Any) -> Any:
    """The plain function behind a `boolean_dispatch` wrapper such as `F.max_pool2d`, whose own
    signature is (*args, **kwargs): `F._max_pool2d`; else `fn`."""
    name = getattr(fn, "__name__", "")
    plain = getattr(F, f"_{name}", None) if getattr(F, name, None) is fn else None
    return plain if callable(plain) else fn


def _bind_names(names: tuple[str, ...], args: Sequence, kwargs: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        if name.startswith("*"):
            rest = tuple(args[i:])
            # x.view((1, -1)) and x.view(1, -1) alike
            if len(rest) == 1 and isinstance(rest[0], (tuple, list, torch.Size)):
                rest = tuple(rest[0])
            out[name[1:]] = rest
            break
        if i < len(args):
            out[name] = args[i]
    out.update(kwargs)
    return out


def _bind_signatures(sigs: list[inspect.Signature], args: Sequence, kwargs: dict) -> dict:
    for sig in sigs:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            continue
        bound.apply_defaults()
        out = dict(bound.arguments)
        for p in sig.parameters.values():  # flatten **kwargs, keep *args under its name
            if p.kind is inspect.Parameter.VAR_KEYWORD and p.name in out:
                out.update(out.pop(p.name))
        return out
    raise TypeError(f"the arguments {args!r}, {kwargs!r} fit none of {[str(s) for s in sigs]}")


def bind(op: str, target: Any, args: Sequence, kwargs: dict | None = None) -> dict[str, Any]:
    """A call's arguments by parameter name, defaults filled in where the signature is known.

    `op` is an fx node's op: "call_function" (Python functions via `inspect.signature`,
    torch builtins via their schemas, `operator.*` as input/other) or "call_method" (`target`
    the method name; the tensor is "input"; the rest as the `torch.*` function of that name,
    or a small table for varargs methods such as `view`, `permute`). Tensor operands of
    `operator.*` and methods are named "input" and "other", as in `torch.add(input, other)`.
    Raises TypeError when the arguments fit no known signature.
    """
    kwargs = dict(kwargs or {})
    if op == "call_method":
        if target in _METHOD_PARAMS:
            return _bind_names(_METHOD_PARAMS[target], args, kwargs)
        name = target.strip("_") if target.startswith("__") else target
        name = {"iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "div",
                "truediv": "div", "radd": "add", "rmul": "mul"}.get(name, name)  # fmt: skip
        fn = getattr(torch, name, None) or getattr(torch, name.rstrip("_"), None)
        sigs = _signatures(fn) if fn is not None else None
        if sigs:
            try:
                return _bind_signatures(sigs, args, kwargs)
            except TypeError:
                pass
        return _bind_names(("input", "*args"), args, kwargs)
    if target in _OPERATOR_PARAMS:
        return _bind_names(_OPERATOR_PARAMS[target], args, kwargs)
    sigs = _signatures(target)
    if not sigs:
        raise TypeError(f"no known signature for {getattr(target, '__name__', target)!r}")
    return _bind_signatures(sigs, args, kwargs)


def tensor_operands(bound: dict[str, Any]) -> list[tuple[str, Any]]:
    """The (name, value) pairs of `bound` that are tensors, lists of tensors included
    ("tensors" of `torch.cat`), in parameter order; fx Nodes count as tensors too."""
    out = []
    for name, value in bound.items():
        if _tensorish(value):
            out.append((name, value))
        elif isinstance(value, (tuple, list)):
            out += [(f"{name}[{i}]", v) for i, v in enumerate(value) if _tensorish(v)]
    return out


def _tensorish(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, torch.fx.Node))


# --------------------------------------------------------------------------------------------
# transposed convolutions

MODULE_KINDS[nn.ConvTranspose2d] = K.TRANSPOSED
FUNCTION_KINDS.update(dict.fromkeys((F.conv_transpose2d, torch.conv_transpose2d), K.TRANSPOSED))


def transposed_of_module(module: nn.Module) -> Window | None:
    """The kernel, stride, padding and dilation of an `nn.ConvTranspose2d` (or a subclass that
    keeps its forward) as a `Window` with mode "transposed", else None. Its output unit o reads
    input unit i through tap k where o = i*stride - padding + k*dilation (`transposed_reads`);
    `output_padding` only adds units at the end."""
    if _kind_of_type(module) is not K.TRANSPOSED or not isinstance(module, nn.ConvTranspose2d):
        return None
    return Window(
        pair(module.kernel_size), pair(module.stride), pair(module.padding),
        pair(module.dilation), mode="transposed",
    )  # fmt: skip


def transposed_of_call(
    target: Any, args: Sequence = (), kwargs: dict | None = None
) -> Window | None:
    """`transposed_of_module` for `F.conv_transpose2d(input, weight, bias, stride, padding,
    output_padding, groups, dilation)`, arguments positional or keyword; else None."""
    if FUNCTION_KINDS.get(target) is not K.TRANSPOSED:
        return None
    b = bind("call_function", target, args, kwargs or {})
    return Window(
        pair(tuple(b["weight"].shape[-2:])), pair(b.get("stride", 1)), pair(b.get("padding", 0)),
        pair(b.get("dilation", 1)), mode="transposed",
    )  # fmt: skip


def transposed_reads(w: Window, n_out: int, axis: int) -> list[tuple[int, int] | None]:
    """For each output unit of a transposed convolution along `axis`, the first and last input
    unit it reads (inclusive), or None for a unit no tap reaches (only the bias: a kernel
    smaller than the stride). Unit o reads i = (o + padding - k*dilation) / stride for the taps
    k whose quotient is a whole number; units before the first or past the last of the input
    count, as a convolution's padding does (its field is then clipped to the image)."""
    k, s, p, d = w.kernel[axis], w.stride[axis], w.padding[axis], w.dilation[axis]
    reads: list[tuple[int, int] | None] = []
    for o in range(n_out):
        hit = [(o + p - t * d) // s for t in range(k) if (o + p - t * d) % s == 0]
        reads.append((min(hit), max(hit)) if hit else None)
    return reads


__all__ = [
    "FUNCTION_KINDS", "METHOD_KINDS", "MODULE_KINDS", "OpKind", "Pad", "Pair", "Window",
    "bind", "classify", "conv_padding", "is_gate", "is_shift", "pad_of_call", "pad_of_module",
    "pair", "tensor_operands", "tf_same_padding", "transposed_of_call", "transposed_of_module",
    "transposed_reads", "window_of_call", "window_of_module",
]  # fmt: skip
