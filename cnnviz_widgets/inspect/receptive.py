"""Exact receptive fields from the traced graph (torch.fx): size, stride and offset per layer.

Unit (i, j) of a layer sees input rows ``[i*stride_h + offset_h, i*stride_h + offset_h + size_h)``
and likewise columns; the offset is negative where the field starts in the zero padding.

The model is traced module by module with ``torch.fx`` (every submodule a leaf, then traced in
turn), and one zero image of ``input_size`` runs through the graph so that every node has its
real shape. Per axis, a window op (kernel k, stride s, padding p, dilation d) maps the field
``(size S, stride J, offset O)`` of its input to ``(S + d(k-1)J, sJ, O - pJ)``; pointwise ops keep
it; a residual add or a channel concatenation takes the union (the hull) of its inputs' fields,
after checking that their strides agree. An op that mixes the whole map (global pooling,
flatten, linear) leaves no spatial field. Normalisations that pool statistics over the map
(GroupNorm, InstanceNorm) are treated as pointwise: the rest of the image reaches a unit only
through a few statistics. Reflect/replicate/circular padding is treated as if it were zeros.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ._locks import ThreadTracer
from .capture import LayerRef, inference_state, resolve_layer
from .inputs import model_device
from .layers import example_input

Pair = tuple[int, int]


@dataclass(frozen=True)
class ReceptiveField:
    """Where each unit of `layer` looks in an input of `input_size`, per axis (rows, columns)."""

    layer: str
    size: Pair
    stride: Pair
    offset: Pair
    output_shape: tuple[int, int, int]
    input_size: Pair

    def box(self, i, j) -> tuple[Any, Any, Any, Any]:
        """(y0, y1, x0, x1) seen by unit (i, j), half-open and unclipped; works on arrays too."""
        y0 = i * self.stride[0] + self.offset[0]
        x0 = j * self.stride[1] + self.offset[1]
        return y0, y0 + self.size[0], x0, x0 + self.size[1]

    def clipped_box(
        self, i: int, j: int, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int, int]:
        """`box(i, j)` clipped to an input of height x width (default: `input_size`)."""
        height = self.input_size[0] if height is None else height
        width = self.input_size[1] if width is None else width
        y0, y1, x0, x1 = self.box(int(i), int(j))
        return max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)

    def describe(self) -> str:
        """A short label such as `196×196, stride 16`."""
        stride = (
            self.stride[0] if self.stride[0] == self.stride[1] else "×".join(map(str, self.stride))
        )
        return f"{self.size[0]}×{self.size[1]}, stride {stride}"


@dataclass(frozen=True)
class _Geo:
    """A spatial field, per axis: size, stride (jump) and offset in input pixels."""

    size: Pair
    stride: Pair
    offset: Pair

    def window(self, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> _Geo:
        """The field after a sliding window op (convolution or pooling)."""
        return _Geo(
            size=_per_axis(lambda a: self.size[a] + dilation[a] * (kernel[a] - 1) * self.stride[a]),
            stride=_per_axis(lambda a: self.stride[a] * stride[a]),
            offset=_per_axis(lambda a: self.offset[a] - padding[a] * self.stride[a]),
        )


@dataclass(frozen=True)
class _NoField:
    """Why a value has no spatial receptive field; `global_` when it mixes the whole map."""

    reason: str
    global_: bool = False


_INPUT = _Geo(size=(1, 1), stride=(1, 1), offset=(0, 0))


def _per_axis(fn) -> Pair:
    return fn(0), fn(1)


def _pair(v: Any) -> Pair:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) else (0, 0)
    return int(v), int(v)


def _union(geos: list[_Geo], what: str) -> _Geo | _NoField:
    """The hull of several fields over the same grid; strides must agree."""
    first = geos[0]
    for g in geos[1:]:
        if g.stride != first.stride:
            return _NoField(f"{what} combines maps with strides {first.stride} and {g.stride}")
    start = _per_axis(lambda a: min(g.offset[a] for g in geos))
    end = _per_axis(lambda a: max(g.offset[a] + g.size[a] for g in geos))
    return _Geo(size=(end[0] - start[0], end[1] - start[1]), stride=first.stride, offset=start)


def _conv_padding(padding: Any, kernel: Pair, dilation: Pair) -> Pair:
    """Padding before the first row/column; 'same' pads total//2 there, as PyTorch does."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return _per_axis(lambda a: dilation[a] * (kernel[a] - 1) // 2)
    return _pair(padding)


def _window_module(module: nn.Module) -> tuple[Pair, Pair, Pair, Pair] | None:
    """(kernel, stride, padding, dilation) of a Conv2d / MaxPool2d / AvgPool2d, else None."""
    if isinstance(module, nn.Conv2d):
        kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
        return (
            kernel,
            _pair(module.stride),
            _conv_padding(module.padding, kernel, dilation),
            dilation,
        )
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride) if module.stride else kernel
        dilation = _pair(getattr(module, "dilation", 1))
        return kernel, stride, _pair(module.padding), dilation
    return None


POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.BatchNorm2d, nn.SyncBatchNorm,
    nn.GroupNorm, nn.InstanceNorm2d, nn.LocalResponseNorm,
)  # fmt: skip

POINTWISE_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus, F.dropout,
    F.dropout2d, F.batch_norm, F.group_norm, F.instance_norm, F.local_response_norm,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.add, torch.sub, torch.mul,
    torch.div, torch.clamp, torch.maximum, torch.minimum, torch.neg, torch.abs, torch.exp,
    torch.sqrt, torch.square, torch.pow,
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow,
    operator.iadd, operator.isub, operator.imul, operator.itruediv,
}  # fmt: skip

POINTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "add", "add_", "sub", "sub_",
    "mul", "mul_", "div", "div_", "clamp", "clamp_", "clamp_min", "clamp_min_", "neg", "abs",
    "exp", "sqrt", "pow", "contiguous", "float", "double", "half", "bfloat16", "to", "type_as",
    "clone", "detach",
}  # fmt: skip

PAD_MODULES = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)

CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}


def _arg(args: Sequence, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _flat_geos(geo: Any) -> list:
    if isinstance(geo, (tuple, list)):
        return [g for sub in geo for g in _flat_geos(sub)]
    if isinstance(geo, dict):
        return [g for sub in geo.values() for g in _flat_geos(sub)]
    return [] if geo is None else [geo]


def _is_map(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 4


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None


class _LayerTracer(ThreadTracer):
    """Every submodule stays a leaf: each is then traced (or ruled) on its own."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


class _FieldRun:
    """Runs the model once, node by node, carrying each value's receptive field alongside."""

    def __init__(self) -> None:
        self.fields: dict[str, _Geo | _NoField] = {}
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        self.types: dict[str, str] = {}
        self.untraceable: dict[str, str] = {}
        self._graphs: dict[int, fx.Graph | Exception] = {}

    def module(self, module: nn.Module, name: str, args: tuple, kwargs: dict, geos: tuple, gkw):
        """Call `module` (recording its field under `name`); returns (value, field).

        `geos` and `gkw` are the fields of the positional and keyword arguments.
        """
        value, geo = self._module(module, name, args, kwargs, geos, gkw)
        if name:
            self.fields[name] = geo if _is_map(value) else _no_map(name, module, value, geo)
            self.shapes[name] = _shape(value)
            self.types[name] = type(module).__name__
        return value, geo

    def _module(self, module, name, args, kwargs, geos, gkw):
        geo_in = geos[0] if geos else next(iter(gkw.values()), None)
        window = _window_module(module)
        if window is not None or isinstance(module, POINTWISE_MODULES):
            value = module(*args, **kwargs)
            if not isinstance(geo_in, _Geo):
                return value, geo_in
            return value, geo_in.window(*window) if window else geo_in
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            value = module(*args, **kwargs)
            return value, _adaptive(name, module, args[0], value, geo_in)
        if isinstance(module, PAD_MODULES):
            value = module(*args, **kwargs)
            return value, _padded(geo_in, module.padding)
        graph = self._graph(module)
        if isinstance(graph, Exception):
            value = module(*args, **kwargs)
            self.untraceable[name] = f"{type(graph).__name__}: {graph}"
            why = f"torch.fx could not trace {name or 'the model'!r} ({type(module).__name__})"
            return value, _NoField(why)
        return self._run_graph(module, graph, name, args, kwargs, geos, gkw)

    def _graph(self, module: nn.Module) -> fx.Graph | Exception:
        key = id(module)
        if key not in self._graphs:
            try:
                self._graphs[key] = _LayerTracer().trace(module)
            except Exception as err:  # an untraceable module: its inner layers get no field
                self._graphs[key] = err
        return self._graphs[key]

    def _run_graph(self, root, graph, prefix, args, kwargs, geos, gkw):
        env: dict[fx.Node, Any] = {}
        genv: dict[fx.Node, Any] = {}
        position = 0
        for node in graph.nodes:
            if node.op == "placeholder":
                env[node], genv[node] = _bind(node, position, args, kwargs, geos, gkw)
                position += 1
                continue
            if node.op == "output":
                out = node.args[0]
                return (
                    fx.graph.map_arg(out, env.__getitem__),
                    fx.node.map_aggregate(out, lambda v: genv.get(v) if _node(v) else None),
                )
            if node.op == "get_attr":
                env[node], genv[node] = _fetch_attr(root, node.target), None
                continue
            a = fx.graph.map_arg(node.args, env.__getitem__)
            kw = fx.graph.map_arg(node.kwargs, env.__getitem__)
            ga = fx.node.map_aggregate(node.args, lambda v: genv.get(v) if _node(v) else None)
            gk = fx.node.map_aggregate(node.kwargs, lambda v: genv.get(v) if _node(v) else None)
            if node.op == "call_module":
                child = root.get_submodule(node.target)
                name = f"{prefix}.{node.target}" if prefix else node.target
                env[node], genv[node] = self.module(child, name, a, kw, tuple(ga), gk)
            elif node.op == "call_function":
                env[node] = node.target(*a, **kw)
                genv[node] = _function_field(node.target, a, kw, ga, gk, env[node])
            else:  # call_method
                env[node] = getattr(a[0], node.target)(*a[1:], **kw)
                genv[node] = _method_field(node.target, a, kw, ga, gk, env[node])
        raise RuntimeError("traced graph has no output node")  # pragma: no cover


def _node(value: Any) -> bool:
    return isinstance(value, fx.Node)


def _bind(node: fx.Node, position: int, args: tuple, kwargs: dict, geos: tuple, gkw: dict):
    """(value, field) of a placeholder from the call's arguments or its default."""
    if position < len(args):
        return args[position], geos[position] if position < len(geos) else None
    name = str(node.target).lstrip("*")
    if name in kwargs:
        return kwargs[name], gkw.get(name)
    return (node.args[0] if node.args else None), None


def _fetch_attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _no_map(name: str, module: nn.Module, value: Any, geo: Any) -> _NoField:
    """Why a module whose output is not a (N, C, H, W) map has no field."""
    if isinstance(geo, _NoField):
        return _NoField(geo.reason, global_=True)
    shape = _shape(value)
    what = f"output shape {shape}" if shape is not None else f"output {type(value).__name__}"
    kind = type(module).__name__
    return _NoField(f"{name!r} ({kind}) has {what}, not a (C, H, W) feature map", global_=True)


def _adaptive(name: str, module: nn.Module, x: Any, value: Any, geo: Any) -> Any:
    """Adaptive pooling is a plain pooling when the sizes divide; to 1x1 it is global."""
    if not isinstance(geo, _Geo) or not _is_map(x) or not _is_map(value):
        return geo
    (h, w), (oh, ow) = x.shape[-2:], value.shape[-2:]
    if (oh, ow) == (1, 1) and (h, w) != (1, 1):
        return _NoField(
            f"{name!r} ({type(module).__name__}) pools the whole map into one position",
            global_=True,
        )
    if h % oh or w % ow:
        return _NoField(
            f"{name!r} ({type(module).__name__}) pools {h}x{w} into {oh}x{ow}: windows of "
            "uneven size have no single receptive field (use an input size that divides evenly)"
        )
    kernel = (h // oh, w // ow)
    return geo.window(kernel, kernel, (0, 0), (1, 1))


def _padded(geo: Any, pad: Any) -> Any:
    """Explicit padding (left, right, top, bottom) shifts the offset back by the pad before."""
    if not isinstance(geo, _Geo):
        return geo
    pad = tuple(pad) if isinstance(pad, (tuple, list)) else (pad,) * 4
    left, top = int(pad[0]), int(pad[2]) if len(pad) > 2 else 0
    return _Geo(
        size=geo.size,
        stride=geo.stride,
        offset=(geo.offset[0] - top * geo.stride[0], geo.offset[1] - left * geo.stride[1]),
    )


def _op_name(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", repr(target))


def _no_field(name: str, geos: list, value: Any) -> Any:
    """Why `value` has no field: an input without one, or not a (C, H, W) map; else None."""
    problems = [g for g in geos if isinstance(g, _NoField)]
    if problems:
        return problems[0]
    if not _is_map(value):
        return _NoField(
            f"{name} gives shape {_shape(value)}, not a (C, H, W) feature map", global_=True
        )
    return None


def _combine(name: str, geos: list, value: Any) -> Any:
    """Pointwise or elementwise: the union of the inputs' fields."""
    return _no_field(name, geos, value) or _union(geos, repr(name))


def _tensor_result(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value)


def _function_field(target, args, kwargs, gargs, gkwargs, value) -> Any:
    """The field of a call_function node's value, or a _NoField saying why there is none."""
    geos = _flat_geos(gargs) + _flat_geos(gkwargs)
    name = _op_name(target)
    if target is operator.getitem:
        return _getitem_field(args, gargs, value)
    if not geos or not _tensor_result(value):
        return None  # a constant, or a shape/size read: nothing in it varies with the pixels
    if target in POINTWISE_FUNCTIONS:
        return _combine(name, geos, value)
    if target in CAT_FUNCTIONS:
        dim = _arg(args, kwargs, 1, "dim", 0)
        if _is_map(value) and dim in (1, -3):
            return _combine(name, geos, value)
    if target in (F.conv2d, F.max_pool2d, torch.max_pool2d, F.avg_pool2d, F.pad):
        return _functional_window(target, args, kwargs, geos, value)
    if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        return _adaptive(name, nn.AdaptiveAvgPool2d(1), args[0], value, geos[0])
    return _unsupported(name, geos, value, args)


def _method_field(method: str, args, kwargs, gargs, gkwargs, value) -> Any:
    """The field of a call_method node's value."""
    geos = _flat_geos(gargs) + _flat_geos(gkwargs)
    if not geos or not _tensor_result(value):
        return None
    if method in POINTWISE_METHODS:
        return _combine(f"Tensor.{method}", geos, value)
    return _unsupported(f"Tensor.{method}", geos, value, args)


def _unsupported(name: str, geos: list, value: Any, args: tuple) -> Any:
    why = _no_field(name, geos, value)
    if why is not None:
        return why
    x = next((a for a in args if _is_map(a)), None)
    if x is not None and tuple(value.shape[-2:]) == (1, 1) and tuple(x.shape[-2:]) != (1, 1):
        return _NoField(f"{name} pools the whole map into one position", global_=True)
    return _NoField(f"the receptive field of {name} is not known (unsupported operation)")


def _functional_window(target, args, kwargs, geos, value) -> Any:
    """F.conv2d / F.max_pool2d / F.avg_pool2d / F.pad on a map with a field."""
    geo = geos[0]
    if not isinstance(geo, _Geo):
        return geo
    if target is F.pad:
        return _padded(geo, _arg(args, kwargs, 1, "pad"))
    if target is F.conv2d:
        kernel = _pair(tuple(_arg(args, kwargs, 1, "weight").shape[-2:]))
        dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
        padding = _conv_padding(_arg(args, kwargs, 4, "padding", 0), kernel, dilation)
        return geo.window(kernel, _pair(_arg(args, kwargs, 3, "stride", 1)), padding, dilation)
    kernel = _pair(_arg(args, kwargs, 1, "kernel_size"))
    stride = _arg(args, kwargs, 2, "stride", None)
    stride = _pair(stride) if stride else kernel
    padding = _pair(_arg(args, kwargs, 3, "padding", 0))
    dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if target is not F.avg_pool2d else (1, 1)
    return geo.window(kernel, stride, padding, dilation)


def _getitem_field(args, gargs, value) -> Any:
    """Indexing a tuple picks that element's field; slicing a map's channels keeps its field."""
    container, index = args[0], args[1]
    geo = gargs[0]
    if isinstance(geo, (tuple, list)):
        return geo[index] if isinstance(index, int) else geo
    if geo is None or not isinstance(container, torch.Tensor):
        return geo
    if isinstance(geo, _NoField):
        return geo
    index = index if isinstance(index, tuple) else (index,)
    spatial = index[2:] if Ellipsis not in index else ()
    keeps_grid = (
        all(isinstance(i, slice) and i == slice(None) for i in spatial)
        and Ellipsis not in index[:2]
    )
    if _is_map(container) and _is_map(value) and keeps_grid:
        return geo
    if not _is_map(value):
        return _NoField(
            f"indexing gives shape {_shape(value)}, not a (C, H, W) feature map", global_=True
        )
    return _NoField(f"the receptive field of indexing with {index!r} is not known")


class FieldAnalysis:
    """Receptive fields of every layer of `model` for one input size, from one traced run."""

    def __init__(self, model: nn.Module, run: _FieldRun, input_size: Pair):
        self.model = model
        self.input_size = input_size
        self._run = run

    def names(self) -> list[str]:
        """Layers that have a receptive field, in call order."""
        return [n for n, g in self._run.fields.items() if isinstance(g, _Geo)]

    def field(self, layer: LayerRef) -> ReceptiveField:
        """The receptive field of `layer`; a ValueError says why a layer has none."""
        name, _ = resolve_layer(self.model, layer)
        geo = self._run.fields.get(name)
        if isinstance(geo, _Geo):
            return ReceptiveField(
                layer=name,
                size=geo.size,
                stride=geo.stride,
                offset=geo.offset,
                output_shape=self._run.shapes[name],
                input_size=self.input_size,
            )
        valid = f"layers with a receptive field are: {', '.join(self.names())}"
        if geo is None and name in self._run.fields:
            raise ValueError(
                f"Layer {name!r} does not depend on the input image, so it has no receptive "
                f"field; {valid}"
            )
        if geo is None:
            inside = [m for m in self._run.untraceable if m == "" or name.startswith(m + ".")]
            if inside:
                why = self._run.untraceable[inside[0]]
                raise ValueError(
                    f"Cannot compute the receptive field of layer {name!r}: torch.fx could not "
                    f"trace {inside[0] or 'the model'!r} ({why}); {valid}"
                )
            raise ValueError(f"Layer {name!r} is never called by the forward pass; {valid}")
        shape = self._run.shapes.get(name)
        kind = self._run.types.get(name, "?")
        spatial = shape is not None and len(shape) == 3
        if not geo.global_:
            raise ValueError(
                f"Cannot compute the receptive field of layer {name!r} ({kind}, output shape "
                f"{shape}): {geo.reason}; {valid}"
            )
        why = f": {geo.reason}" if spatial else ""
        raise ValueError(
            f"Layer {name!r} ({kind}, output shape {shape}) has no spatial output, so it has no "
            f"receptive field and no patches{why}; {valid}"
        )


def analyse_fields(
    model: nn.Module, input_size: int | Pair = (224, 224), *, channels: int | None = None
) -> FieldAnalysis:
    """Trace `model` and run one zero image of `input_size` through it, recording every field."""
    size = _pair(input_size)
    run = _FieldRun()
    x = example_input(model, size, channels).to(model_device(model))
    with inference_state(model):
        try:
            run.module(model, "", (x,), {}, (_INPUT,), {})
        except Exception as err:
            raise ValueError(
                f"Running {type(model).__name__} on a zero image of input_size {size} failed "
                f"({type(err).__name__}: {err}); pass the input_size the model takes"
            ) from err
    return FieldAnalysis(model, run, size)


def receptive_field(
    model: nn.Module,
    layer: LayerRef,
    input_size: int | Pair = (224, 224),
    *,
    channels: int | None = None,
) -> ReceptiveField:
    """The exact receptive field (size, stride, offset per axis) of `layer`'s units."""
    return analyse_fields(model, input_size, channels=channels).field(layer)


def receptive_fields(
    model: nn.Module,
    input_size: int | Pair = (224, 224),
    layers: Sequence[LayerRef] | None = None,
    *,
    channels: int | None = None,
) -> dict[str, ReceptiveField]:
    """Fields of `layers` (raising for one without a field), or of every layer that has one."""
    analysis = analyse_fields(model, input_size, channels=channels)
    names = analysis.names() if layers is None else layers
    fields = [analysis.field(layer) for layer in names]
    return {f.layer: f for f in fields}
