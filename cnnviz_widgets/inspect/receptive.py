"""Receptive fields from the traced graph (torch.fx): size, stride and offset per layer.

Unit (i, j) of a layer sees input rows ``[i*stride_h + offset_h, i*stride_h + offset_h + size_h)``
and likewise columns; the offset is negative where the field starts in the zero padding.

This is the geometric field of the convolutional path. The model is traced module by module
with ``torch.fx`` (every submodule a leaf, then traced in turn, with its None/bool/number
arguments as constants, and a tuple or list of tensors and constants, a cell's ``(x, None)``,
as a structure of placeholders and constants; a module whose code branches on or computes with
shapes is traced again with its call's shapes concrete, as `tracing.py` does; a module made
inside a forward is traced through), and one zero image of
``input_size`` runs through the graph so that every node has its real shape. What each op
does to the grid comes from `geometry.py`. Per axis, a window op (kernel k, stride s, padding
p before, dilation d; TF-"same" and ceil mode included) maps the field ``(size S, stride J,
offset O)`` of its input to ``(S + d(k-1)J, sJ, O - pJ)``; pointwise ops keep it; a residual
add or a channel concatenation takes the union (the hull) of its inputs' fields, after
checking that their strides agree. Every value carries its layout (which dim is N, C, H, W),
so a permute to channels-last and back, with Linear / LayerNorm / softmax on the channel dim
in between (as in ConvNeXt), is pointwise; channel reshapes (ShuffleNet's shuffle), channel
slices, chunks and reductions over channels (and over the batch) keep the grid.

A channel gate computed from a global pool (squeeze-excite: the map times a (N, C, 1, 1)
tensor derived from a mean over the map, however spelt: an adaptive pooling, a mean, a pooling
whose one window holds the map as ``F.avg_pool2d(x, x.size(2))``, through Linear layers and
``expand_as``) scales channels and does not widen the crop: the field is that of the map,
marked ``gated`` ("+ global gate"); a per-channel value computed from the whole map and added
or subtracted (``x - x.mean((0, 2, 3))``) likewise, marked ``shifted``. Normalisations that
pool statistics over the map (GroupNorm, InstanceNorm) are treated as pointwise: the rest of
the image reaches a unit only through a few statistics.
Reflect/replicate/circular padding is treated as if it were zeros.

Upsampling (`_upsampled`: nearest, bilinear, ... found by running the op on one-hot maps) and
strided transposed convolutions (`_transposed`) make a finer grid whose neighbouring units
read differently placed windows: no (size, stride, offset) gives each unit its own hull, so
the field is the smallest one at one stride that holds every unit's, marked a bound
(``kind="bound"``, `_finer`); a transposed convolution at stride 1 is an exact convolution,
and a grid finer than the input's pixels has no field. An op that mixes whole rows, columns
or the whole map (flatten, attention, a linear over a spatial dim) gives the maps computed
from it the whole image as their field (``kind="image"``); pooled to one position, a value
has no spatial field. Every value without a field says why.

A block no tracer can follow (TorchScript; control flow on values) is measured instead, at
its call's shapes (`_Probe`): which input rows and columns reach each output unit, found by
running it on copies of its input with one row or column set to NaN. A window at one stride
that gives those reads makes an exact field, other reads a bound, every unit reading every
pixel the whole image; the layers its forward calls are measured in the same runs. The model
itself failing to trace is an error.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch import nn

from . import geometry as G
from .capture import LayerRef, resolve_layer
from .geometry import OpKind as K
from .geometry import Pair, pair
from .inputs import model_device
from .layers import example_input
from .tracing import Tracer, mutated_input, opaque
from .view import inference_view
from .wrappers import unwrap

NCHW = ("N", "C", "H", "W")


@dataclass(frozen=True)
class ReceptiveField:
    """Where each unit of `layer` looks in an input of `input_size`, per axis (rows, columns).

    `gated`: a channel gate computed from the whole map (squeeze-excite) scales the layer's
    units, so they also depend on the rest of the image through a few global statistics;
    the crop is still the geometric field. `shifted`: likewise for a per-channel value
    computed from the whole map that is added or subtracted (a subtracted mean: per-image or
    per-batch input normalisation). `layout` is "CHW", or "HWC" for a channels-last
    map (ConvNeXt's blocks between their permutes; only given on request, see
    `FieldAnalysis.field`), whose `output_shape` is then (H, W, C).

    `kind` says how the box relates to what a unit sees; `note` says why when not "exact":

    - "exact": each unit's box is the hull of the input pixels that reach it;
    - "bound": after upsampling or a strided transposed convolution, neighbouring units read
      differently placed windows, so no (size, stride, offset) gives each unit its own hull;
      the box is the smallest one at one stride that holds every unit's;
    - "image": the units mix whole rows, columns or the whole map (attention, a flatten and
      back, a linear over a spatial dim): the box is the whole image (stride 0).
    """

    layer: str
    size: Pair
    stride: Pair
    offset: Pair
    output_shape: tuple[int, int, int]
    input_size: Pair
    gated: bool = False
    layout: str = "CHW"
    shifted: bool = False
    kind: str = "exact"
    note: str = ""

    @property
    def exact(self) -> bool:
        """Whether each unit's box is exactly the hull of the pixels that reach it."""
        return self.kind == "exact"

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
        """A short label such as `196×196, stride 16` (`… + global gate` when gated,
        `… + global shift` when shifted); a bound reads `≤ 14×14, stride 2`, a field of the
        whole image `whole image (64×64)`."""
        if self.kind == "image":
            return f"whole image ({self.input_size[0]}×{self.input_size[1]})"
        stride = (
            self.stride[0] if self.stride[0] == self.stride[1] else "×".join(map(str, self.stride))
        )
        bound = "≤ " if self.kind == "bound" else ""
        gate = " + global gate" if self.gated else ""
        shift = " + global shift" if self.shifted else ""
        return f"{bound}{self.size[0]}×{self.size[1]}, stride {stride}{gate}{shift}"


@dataclass(frozen=True)
class _Geo:
    """A spatial field, per axis: size, stride (jump) and offset in input pixels.

    `dims` labels the value's dims (N, C, H, W; several C where channels are split);
    `gated` / `shifted` mark a field that a global channel gate scaled / a global per-channel
    value shifted on the way; `exact` is False for a bound, and `note` then says why."""

    size: Pair
    stride: Pair
    offset: Pair
    dims: tuple[str, ...] = NCHW
    gated: bool = False
    shifted: bool = False
    exact: bool = True
    note: str = ""

    def window(self, w: G.Window) -> _Geo:
        """The field after a sliding window op (convolution or pooling)."""
        return replace(
            self,
            size=_per_axis(
                lambda a: self.size[a] + w.dilation[a] * (w.kernel[a] - 1) * self.stride[a]
            ),
            stride=_per_axis(lambda a: self.stride[a] * w.stride[a]),
            offset=_per_axis(lambda a: self.offset[a] - w.padding[a] * self.stride[a]),
        )

    @property
    def channels_first(self) -> bool:
        """H and W are the last two dims (a (N, C, H, W)-like map)."""
        return self.dims[-2:] == ("H", "W")


@dataclass(frozen=True)
class _NoField:
    """Why a value has no spatial receptive field; `global_` when it mixes the whole map;
    `flat` when it is the same at every position of the grid (a global value expanded to the
    map's size, as a squeeze-excite gate written with `expand_as`)."""

    reason: str
    global_: bool = False
    flat: bool = False


_INPUT = _Geo(size=(1, 1), stride=(1, 1), offset=(0, 0))


def _per_axis(fn) -> Pair:
    return fn(0), fn(1)


def _union(geos: list[_Geo], what: str, value: Any = None) -> _Geo | _NoField:
    """The hull of several fields over the same grid; strides and layouts must agree.

    Along an axis where the result `value` has one unit, the stride only says how the grid
    would step: a stride 0 there (a 1-unit map pooled to 1x1, as squeeze-excite does at the
    last stage of a small input) agrees with any other. Along an axis of n units, a map read
    at one position (stride 0: a 1-unit map upsampled, as HRNet's deepest branch is at a small
    input) joins a map at stride J as a bound: the one window, seen from every unit, is the
    field of size S + (n-1)J at stride J that starts (n-1)J earlier."""
    first = geos[0]
    for g in geos[1:]:
        if _spatial_dims(g.dims) != _spatial_dims(first.dims):
            return _NoField(f"{what} combines maps of layouts {first.dims} and {g.dims}")
    stride, start, end, note = [], [], [], ""
    for a, dim in enumerate(_spatial_dims(first.dims)):
        steps = {g.stride[a] for g in geos}
        units = value.shape[dim] if _is_map(value, first) else None
        if len(steps) > 1 and units == 1:
            steps.discard(0)
        spread = 0  # how far a stride-0 window is spread to step with the others
        if len(steps) == 2 and 0 in steps and units is not None:
            steps.discard(0)
            spread = (units - 1) * next(iter(steps))
            note = note or (
                f"{what} joins a map read at one position (stride 0) to a map at stride "
                f"{next(iter(steps))}, so no (size, stride, offset) gives each unit its own "
                "window; the field is the smallest at one stride that holds every unit's"
            )
        if len(steps) > 1:
            strides = " and ".join(str(s) for s in dict.fromkeys(g.stride for g in geos))
            return _NoField(f"{what} combines maps with strides {strides}")
        stride.append(steps.pop())
        start.append(min(g.offset[a] - (spread if g.stride[a] == 0 else 0) for g in geos))
        end.append(max(g.offset[a] + g.size[a] for g in geos))
    return _Geo(
        size=(end[0] - start[0], end[1] - start[1]),
        stride=(stride[0], stride[1]),
        offset=(start[0], start[1]),
        dims=max((g.dims for g in geos), key=len),
        gated=any(g.gated for g in geos),
        shifted=any(g.shifted for g in geos),
        exact=all(g.exact for g in geos) and not note,
        note=next((g.note for g in geos if g.note), note),
    )


def _spatial_dims(dims: tuple[str, ...]) -> tuple[int, int]:
    """Positions of H and W counted from the end (broadcasting aligns trailing dims)."""
    return dims.index("H") - len(dims), dims.index("W") - len(dims)


def _flat_geos(geo: Any) -> list:
    if isinstance(geo, (tuple, list)):
        return [g for sub in geo for g in _flat_geos(sub)]
    if isinstance(geo, dict):
        return [g for sub in geo.values() for g in _flat_geos(sub)]
    return [g for g in [geo] if isinstance(g, (_Geo, _NoField))]


def _is_map(value: Any, geo: Any = None) -> bool:
    """A tensor with a grid: (N, C, H, W), or the dims `geo` labels."""
    if not isinstance(value, torch.Tensor):
        return False
    if isinstance(geo, _Geo):
        return value.ndim == len(geo.dims)
    return value.ndim == 4


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None


def _materialize(value: Any, lookup) -> Any:
    """fx args with Nodes replaced by `lookup(node)`, as plain (mutable) lists and dicts."""
    if isinstance(value, fx.Node):
        return lookup(value)
    if isinstance(value, tuple):
        return tuple(_materialize(v, lookup) for v in value)
    if isinstance(value, list):
        return [_materialize(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: _materialize(v, lookup) for k, v in value.items()}
    return value


_CONSTANT = (type(None), bool, int, float, str)


def _tensor_struct(value: Any) -> bool:
    """A (nested) tuple, list or dict of tensors and constants holding at least one tensor:
    HRNet's list of branches, a cell's `(x, None)`."""
    if not isinstance(value, (list, tuple, dict)):
        return False
    leaves = pytree.tree_leaves(value)
    return any(isinstance(v, torch.Tensor) for v in leaves) and all(
        isinstance(v, (torch.Tensor, *_CONSTANT)) for v in leaves
    )


def _placeholders(value: Any) -> Any:
    """`value` with each tensor a placeholder and each constant kept (fx's concrete_args)."""
    return pytree.tree_map(lambda v: fx.PH if isinstance(v, torch.Tensor) else v, value)


def _leaf_geos(value: Any, geo: Any) -> list:
    """The field of each pytree leaf of `value`, from `geo` (a field, or a structure of fields
    like `value`'s; a constant leaf has None)."""
    sequences = isinstance(value, (tuple, list)) and isinstance(geo, (tuple, list))
    if sequences and len(geo) == len(value):
        return [g for v, sub in zip(value, geo, strict=True) for g in _leaf_geos(v, sub)]
    if isinstance(value, dict) and isinstance(geo, dict):
        return [g for k, v in value.items() for g in _leaf_geos(v, geo.get(k))]
    one = geo if isinstance(geo, (_Geo, _NoField)) else None
    return [one if isinstance(v, torch.Tensor) else None for v in pytree.tree_leaves(value)]


def _forward_arguments(module: nn.Module, args: tuple, kwargs: dict):
    """The call's arguments bound to `forward`'s parameters (defaults filled), or None."""
    try:
        sig = inspect.signature(module.forward)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values()):
        return None
    bound.apply_defaults()
    return bound.arguments


class _FieldRun:
    """Runs the model once, node by node, carrying each value's receptive field alongside."""

    def __init__(self) -> None:
        self.fields: dict[str, _Geo | _NoField] = {}
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        self.types: dict[str, str] = {}
        self.untraceable: dict[str, str] = {}
        self._graphs: dict[Any, fx.Graph | Exception] = {}

    def module(self, module: nn.Module, name: str, args: tuple, kwargs: dict, geos: tuple, gkw):
        """Call `module` (recording its field under `name`); returns (value, field).

        `geos` and `gkw` are the fields of the positional and keyword arguments.
        """
        value, geo = self._module(module, name, args, kwargs, geos, gkw)
        if name:
            self.fields[name] = geo if _is_map(value, geo) else _no_map(name, module, value, geo)
            self.shapes[name] = _shape(value)
            self.types[name] = type(module).__name__
        return value, geo

    def _module(self, module, name, args, kwargs, geos, gkw):
        kind = G.classify("call_module", None, module)
        if kind is not K.UNKNOWN:
            value = module(*args, **kwargs)
            x = args[0] if args else next(iter(kwargs.values()), None)
            geo_in = geos[0] if geos else next(iter(gkw.values()), None)
            what = f"{name!r} ({type(module).__name__})"
            return value, _module_field(kind, what, module, x, geo_in, value)
        if opaque(module) and name:  # TorchScript: no Python to trace
            why = "it is TorchScript, whose code torch.fx cannot trace"
            return self._measured(module, name, args, kwargs, geos, gkw, why)
        return self._traced(module, name, args, kwargs, geos, gkw)

    def _measured(self, module, name, args, kwargs, geos, gkw, why: str):
        """An opaque block (`_Probe`): its value, and the fields of its output and of every
        layer inside it that its forward calls, measured at this call's shapes."""
        inner = {f"{name}.{k}": m for k, m in module.named_modules() if k}
        probe = _Probe(module, inner, args, kwargs, geos, gkw)
        for n, out in probe.inner.items():  # in the order they returned, as traced layers are
            geo = probe.field(n, out, f"{n!r} ({type(inner[n]).__name__})", why)
            self.fields[n] = geo if _is_map(out, geo) else _no_map(n, inner[n], out, geo)
            self.shapes[n] = _shape(out)
            self.types[n] = type(inner[n]).__name__
        what = f"{name!r} ({type(module).__name__})"
        leaves, spec = pytree.tree_flatten(probe.value)
        geos_out = [probe.field(i, v, what, why) for i, v in enumerate(leaves)]
        return probe.value, pytree.tree_unflatten(geos_out, spec)

    def _traced(self, module, name, args, kwargs, geos, gkw):
        arguments = _forward_arguments(module, args, kwargs)
        concrete, values, fields = None, None, None
        if arguments is not None:
            concrete = {k: v for k, v in arguments.items() if isinstance(v, _CONSTANT)}
            # a list of maps (HRNet's branches), a tuple with a None (a cell's `(x, None)`)
            # stays a real structure: a placeholder per tensor, its constants concrete, so that
            # the forward may index, unpack, assign into it and branch on its constants
            structs = {k: v for k, v in arguments.items() if _tensor_struct(v)}
            concrete.update({k: _placeholders(v) for k, v in structs.items()})
            # placeholders follow forward's parameters in order, one per leaf of a structure
            # (fx makes one for each constant leaf too, and checks it has its value)
            gbound = inspect.signature(module.forward).bind_partial(*geos, **gkw).arguments
            values, fields = [], []
            for k, v in arguments.items():
                g = gbound.get(k)
                if k in structs:
                    values += pytree.tree_leaves(v)
                    fields += _leaf_geos(v, g)
                else:
                    values.append(v)
                    fields.append(g)
        graph = self._graph(module, concrete, values)
        if isinstance(graph, Exception):
            self.untraceable[name] = f"{type(graph).__name__}: {graph}"
            if name:  # a block: its geometry is measured instead
                error = str(graph).splitlines()[0] if str(graph) else ""
                why = f"torch.fx could not trace it ({type(graph).__name__}: {error[:200]})"
                return self._measured(module, name, args, kwargs, geos, gkw, why)
            value = module(*args, **kwargs)
            why = f"torch.fx could not trace {name or 'the model'!r} ({type(module).__name__})"
            return value, _NoField(why)
        if values is not None:
            return self._run_graph(module, graph, name, tuple(values), {}, tuple(fields), {})
        return self._run_graph(module, graph, name, args, kwargs, geos, gkw)

    def _graph(
        self, module: nn.Module, concrete: dict | None, values: list | None
    ) -> fx.Graph | Exception:
        """`module`'s graph, every submodule a leaf; where plain tracing fails, traced again
        with the shapes of this call's `values` (one per placeholder) concrete, so that code
        that branches on or computes with shapes (`if x.shape[-1] > 8`, MobileViT's patch
        counts) traces as it runs at this input size."""
        shapes = tuple(
            tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in values or ()
        )
        key = (id(module), tuple(sorted((k, repr(v)) for k, v in (concrete or {}).items())), shapes)
        if key not in self._graphs:
            try:
                tracer = Tracer(every_leaf=True)
                self._graphs[key] = tracer.trace(module, concrete_args=concrete or None)
            except Exception as err:  # an untraceable module: its inner layers get no field
                self._graphs[key] = err
                if values is not None:
                    with contextlib.suppress(Exception):
                        tracer = Tracer(example=tuple(values), every_leaf=True)
                        self._graphs[key] = tracer.trace(module, concrete_args=concrete or None)
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
                value, geo = _materialize(out, env.__getitem__), _materialize(out, genv.get)
                info = getattr(graph._codegen, "pytree_info", None)
                if info is not None and info.out_spec is not None:  # traced with list args
                    value = pytree.tree_unflatten(list(value), info.out_spec)
                    geo = pytree.tree_unflatten(list(geo), info.out_spec)
                return value, geo
            if node.op == "get_attr":
                env[node], genv[node] = _fetch_attr(root, node.target), None
                continue
            a = _materialize(node.args, env.__getitem__)
            kw = _materialize(node.kwargs, env.__getitem__)
            ga = _materialize(node.args, genv.get)
            gk = _materialize(node.kwargs, genv.get)
            if node.op == "call_module":
                child = root.get_submodule(node.target)
                name = f"{prefix}.{node.target}" if prefix else node.target
                env[node], genv[node] = self.module(child, name, a, kw, tuple(ga), gk)
            elif node.op == "call_function":
                env[node] = node.target(*a, **kw)
                genv[node] = _call_field("call_function", node.target, a, kw, ga, gk, env[node])
            else:  # call_method
                env[node] = getattr(a[0], node.target)(*a[1:], **kw)
                genv[node] = _call_field("call_method", node.target, a, kw, ga, gk, env[node])
            mutated = mutated_input(node, root)
            if mutated is not None:  # later reads of the mutated tensor see the op's field
                genv[mutated] = genv[node]
        raise RuntimeError("traced graph has no output node")  # pragma: no cover


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
    """Why a module whose output is not a map with a field has none."""
    if isinstance(geo, _NoField):
        return geo
    shape = _shape(value)
    what = f"output shape {shape}" if shape is not None else f"output {type(value).__name__}"
    kind = type(module).__name__
    return _NoField(f"{name!r} ({kind}) has {what}, not a (C, H, W) feature map", global_=True)


def _what(op: str, target: Any) -> str:
    if op == "call_method":
        return f"Tensor.{target}"
    return getattr(target, "__name__", repr(target))


def _tensor_result(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value)


def _module_field(kind: K, what: str, module: nn.Module, x: Any, geo: Any, value: Any) -> Any:
    """The field of a module's output from the table in `geometry.py`."""
    if not isinstance(geo, _Geo):
        return geo  # None (a constant) or a _NoField: nothing to add
    if kind in (K.POINTWISE, K.POINTWISE_GEOMETRIC):
        return geo
    if kind is K.WINDOW:
        window = G.window_of_module(module, tuple(x.shape[-2:]))
        return _windowed(geo, window, what)
    if kind is K.PAD:
        return _padded(geo, G.pad_of_module(module), what)
    if kind is K.ADAPTIVE_POOL:
        return _adaptive(what, x, value, geo)
    if kind is K.LAST_DIM:
        n = len(module.normalized_shape) if isinstance(module, nn.LayerNorm) else 1
        return _last_dims(geo, n, what)
    if kind is K.ALONG_DIM:
        dim = module.dim if module.dim is not None else (0 if x.ndim in (0, 1, 3) else 1)
        return _along(geo, dim, what)
    if kind is K.PERMUTE:
        return _permuted(geo, list(module.dims))
    if kind is K.RESHAPE:
        return _reshaped(geo, x, value, what)
    if kind is K.UPSAMPLE:
        return _upsampled(what, x, value, geo, module.forward)
    if kind is K.TRANSPOSED:
        return _transposed(what, x, value, geo, G.transposed_of_module(module))
    return _NoField(f"the receptive field of {what} is not known (unsupported operation)")


def _call_field(op: str, target: Any, args, kwargs, gargs, gkwargs, value) -> Any:
    """The field of a call_function / call_method node's value, or a _NoField saying why."""
    if op == "call_function" and target is operator.setitem:
        _setitem(args, gargs)  # hrnet: x[i] = branch(x[i]) on a list of maps
        return None
    if op == "call_function" and target is operator.getitem:
        return _getitem_field(args, gargs, value)
    lists = all(isinstance(g, (list, tuple)) for g in gargs[:2])
    if lists and isinstance(value, (list, tuple)) and target in (operator.add, operator.iadd):
        return [*gargs[0], *gargs[1]]  # DLA: [x2, x1] + children, a list of maps
    geos = _flat_geos(gargs) + _flat_geos(gkwargs)
    if not geos or not _tensor_result(value):
        return None  # a constant, or a shape/size read: nothing in it varies with the pixels
    what = _what(op, target)
    try:
        bound = G.bind(op, target, args, kwargs)
        gbound = G.bind(op, target, gargs, gkwargs)
    except TypeError:
        bound = gbound = None
    kind = G.classify(op, target, bound=bound)
    if bound is None or kind is K.UNKNOWN:
        return _unsupported(what, geos, value, args)
    if kind is K.BROADCAST:
        return _broadcast(what, *_main_operand(bound, gbound), value)
    if kind is K.BINARY:
        return _binary(op, target, what, bound, gbound, value)
    if kind is K.CAT:
        return _cat(what, bound, gbound, value)
    x, geo = _main_operand(bound, gbound)
    if not isinstance(geo, _Geo):
        return geo if geo is not None else _first_problem(geos)
    if kind in (K.POINTWISE, K.POINTWISE_GEOMETRIC):
        return _combine(what, geos, value)
    if kind is K.WINDOW:
        return _windowed(geo, G.window_of_call(target, args, kwargs), what)
    if kind is K.PAD:
        return _padded(geo, G.pad_of_call(target, args, kwargs), what)
    if kind is K.ADAPTIVE_POOL:
        return _adaptive(what, x, value, geo)
    if kind is K.LAST_DIM:
        shape = bound.get("normalized_shape")
        return _last_dims(geo, len(shape) if shape is not None else 1, what)
    if kind is K.ALONG_DIM:
        return _along(geo, bound.get("dim"), what)
    if kind is K.REDUCE:
        return _reduced(geo, bound.get("dim"), bool(bound.get("keepdim", False)), what)
    if kind is K.PERMUTE:
        return _permute_call(geo, target, bound)
    if kind is K.RESHAPE:
        return _reshaped(geo, x, value, what)
    if kind is K.SPLIT:
        return _split(geo, bound.get("dim", 0), value, what)
    if kind is K.UPSAMPLE:
        return _upsampled(what, x, value, geo, lambda t: target(**{**bound, "input": t}))
    if kind is K.TRANSPOSED:
        return _transposed(what, x, value, geo, G.transposed_of_call(target, args, kwargs))
    if kind is K.GLOBAL:
        return _NoField(f"{what} mixes the whole map", global_=True)
    return _unsupported(what, geos, value, args)


def _main_operand(bound: dict, gbound: dict) -> tuple[Any, Any]:
    """The first tensor argument and its field."""
    for name, value in G.tensor_operands(bound):
        if "[" not in name:
            return value, gbound.get(name)
    return None, None


def _first_problem(geos: list) -> Any:
    return next((g for g in geos if isinstance(g, _NoField)), None)


def _setitem(args: Sequence, gargs: Sequence) -> None:
    container, index = args[0], args[1]
    geo_container = gargs[0]
    if isinstance(container, list) and isinstance(geo_container, list):
        geo_container[index] = gargs[2]


def _no_field(name: str, geos: list, value: Any) -> Any:
    """Why `value` has no field: an input without one, or not a map; else None."""
    problem = _first_problem(geos)
    if problem is not None:
        return problem
    maps = [g for g in geos if isinstance(g, _Geo)]
    if not maps or not _is_map(value, maps[0]):
        return _NoField(
            f"{name} gives shape {_shape(value)}, not a (C, H, W) feature map", global_=True
        )
    return None


def _combine(name: str, geos: list, value: Any) -> Any:
    """Pointwise or elementwise: the union of the inputs' fields."""
    maps = [g for g in geos if isinstance(g, _Geo)]
    return _no_field(name, geos, value) or _union(maps, repr(name), value)


def _binary(op: str, target: Any, what: str, bound: dict, gbound: dict, value: Any) -> Any:
    """Elementwise with broadcasting; a map times a global (…, 1, 1) factor is a gate, plus or
    minus one a shift (a subtracted mean); any other value computed from the whole map makes
    each unit depend on the whole map."""
    operands = [(v, _flat_geos(gbound.get(n.split("[")[0]))) for n, v in G.tensor_operands(bound)]
    pairs = [(v, g) for v, gs in operands for g in gs]
    pairs = _spread_operands(op, target, what, pairs, value)
    if isinstance(pairs, _NoField):
        return pairs
    maps = [g for _, g in pairs if isinstance(g, _Geo)]
    others = [(v, g) for v, g in pairs if isinstance(g, _NoField)]
    if not others:
        field = _combine(what, maps, value)
        pooled = any(0 in g.stride for g in maps) and not all(0 in g.stride for g in maps)
        if isinstance(field, _Geo) and pooled and G.is_gate(op, target):
            return replace(field, gated=True)  # a gate pooled from a 1-unit map
        if isinstance(field, _Geo) and pooled and G.is_shift(op, target):
            return replace(field, shifted=True)
        return field
    if not maps:
        return others[0][1]
    nonglobal = [g for _, g in others if not g.global_]
    if nonglobal:
        return nonglobal[0]
    union = _union(maps, repr(what), value)
    if not isinstance(union, _Geo) or not _is_map(value, union):
        return union if isinstance(union, _NoField) else _no_field(what, maps, value)
    h, w = _spatial_dims(union.dims)
    flat = all(g.flat or v.ndim < -h or (v.shape[h] == 1 and v.shape[w] == 1) for v, g in others)
    if G.is_gate(op, target) and flat:
        return replace(union, gated=True)
    if G.is_shift(op, target) and flat:
        return replace(union, shifted=True)
    reason = others[0][1].reason
    per_channel = (
        "; only a per-channel gate (multiply) or shift (add, subtract) keeps the geometric field"
        if flat
        else ""
    )
    return _NoField(
        f"{what} combines the map with a value computed from the whole map ({reason}){per_channel}",
        global_=True,
    )


def _one_position(v: Any, g: _Geo, value: Any) -> bool:
    """Whether map operand `v` (field `g`) has one position along the grid of the broadcast
    result `value`, which has more: a (N, C, 1, 1) map, or one expanded (stride 0)."""
    if not _is_map(value, g) or not isinstance(v, torch.Tensor):
        return False
    dims = _spatial_dims(g.dims)
    if v.ndim < -dims[0] or all(value.shape[d] == 1 for d in dims):
        return False
    return all(v.shape[d] == 1 or g.stride[a] == 0 for a, d in enumerate(dims))


def _spread_operands(op: str, target: Any, what: str, pairs: list, value: Any) -> Any:
    """The (tensor, field) operands of an elementwise op, each map of one position broadcast
    over maps with a grid made what it is to them. A factor whose one window holds every
    window of theirs is a global gate (flat, as a gate pooled by an adaptive pooling is:
    squeeze-excite's `F.avg_pool2d(x, x.size(2))`); any other is a window read at one
    position (stride 0), which `_union` spreads into a bound, as for a 1-unit map upsampled."""
    maps = [(v, g) for v, g in pairs if isinstance(g, _Geo)]
    one = [g for v, g in maps if _one_position(v, g, value)]
    grid = [g for v, g in maps if not _one_position(v, g, value)]
    if not one or not grid:
        return pairs
    hull = _union(grid, repr(what), value)
    if not isinstance(hull, _Geo):
        return hull
    dims = _spatial_dims(hull.dims)
    n = [value.shape[d] for d in dims]
    out = []
    for v, g in pairs:
        if not any(g is o for o in one):
            out.append((v, g))
            continue
        holds = all(
            g.offset[a] <= hull.offset[a]
            and g.offset[a] + g.size[a]
            >= hull.offset[a] + (n[a] - 1) * hull.stride[a] + hull.size[a]
            for a in (0, 1)
        )
        if holds and G.is_gate(op, target):
            why = f"{what} scales the map by a factor pooled from all of its field"
            out.append((v, _NoField(why, global_=True, flat=True)))
        else:
            stride = tuple(0 if v.shape[d] == 1 else j for d, j in zip(dims, g.stride, strict=True))
            out.append((v, replace(g, stride=stride)))
    return out


def _broadcast(what: str, x: Any, geo: Any, value: Any) -> Any:
    """`expand` / `expand_as` / `broadcast_to`: dims of one unit repeated. A global value
    expanded over the map's grid is the same at every position (flat: a gate); a map expanded
    along its rows or columns reads one window there (stride 0)."""
    if not isinstance(x, torch.Tensor) or not isinstance(value, torch.Tensor):
        return geo
    lead = value.ndim - x.ndim
    grown = [d for d in range(x.ndim) if x.shape[d] == 1 and value.shape[lead + d] != 1]
    if isinstance(geo, _NoField):
        grid = x.ndim >= 2 and value.ndim >= 2 and value.shape[-2:] != (1, 1)
        whole = grid and x.shape[-2:] == (1, 1)
        return replace(geo, flat=True) if whole and geo.global_ else geo
    if not isinstance(geo, _Geo):
        return geo
    labels = ("C",) * lead + geo.dims
    stride = list(geo.stride)
    for d in grown:
        if geo.dims[d] in ("H", "W"):
            stride[0 if geo.dims[d] == "H" else 1] = 0
    new = replace(geo, stride=(stride[0], stride[1]), dims=labels)
    return new if _is_map(value, new) else _NoField(f"the receptive field of {what} is not known")


def _cat(what: str, bound: dict, gbound: dict, value: Any) -> Any:
    geos = _flat_geos(gbound.get("tensors"))
    maps = [g for g in geos if isinstance(g, _Geo)]
    problem = _no_field(what, geos, value)
    if problem is not None:
        return problem
    dims = maps[0].dims
    dim = bound.get("dim", 0)
    if _label(dims, dim) == "C":
        return _union(maps, repr(what), value)
    return _NoField(f"{what} joins maps along dim {dim} ({_label(dims, dim)}), not channels")


def _label(dims: tuple[str, ...], dim: Any) -> str:
    try:
        return dims[int(dim)]
    except (IndexError, TypeError, ValueError):
        return "?"


def _windowed(geo: _Geo, window: G.Window | None, what: str) -> Any:
    if window is None:
        return _NoField(f"the window of {what} is not known")
    if not geo.channels_first:
        return _NoField(f"{what} slides over dims that are not the map's rows and columns")
    return geo.window(window)


def _padded(geo: _Geo, pad: G.Pad | None, what: str) -> Any:
    """Explicit padding shifts the offset back by the pad before (top / left)."""
    if pad is None:
        return _NoField(f"the padding of {what} is not known")
    if not geo.channels_first:
        return _NoField(f"{what} pads dims that are not the map's rows and columns")
    return replace(
        geo,
        offset=(geo.offset[0] - pad.top * geo.stride[0], geo.offset[1] - pad.left * geo.stride[1]),
    )


def _adaptive(what: str, x: Any, value: Any, geo: Any) -> Any:
    """Adaptive pooling is a plain pooling when the sizes divide; to 1x1 it is global; from a
    1-unit axis every output unit reads that one unit (stride 0: VGG's 7x7 pool of a 1x1 map)."""
    if not isinstance(geo, _Geo) or not _is_map(x) or not _is_map(value):
        return geo
    (h, w), (oh, ow) = x.shape[-2:], value.shape[-2:]
    if (oh, ow) == (1, 1) and (h, w) != (1, 1):
        return _NoField(f"{what} pools the whole map into one position", global_=True)
    sizes = ((h, oh), (w, ow))
    if all(n == 1 or n % m == 0 for n, m in sizes):
        kernel = _per_axis(lambda a: sizes[a][0] // sizes[a][1] if sizes[a][0] > 1 else 1)
        out = geo.window(G.Window(kernel, kernel, (0, 0)))
        return replace(out, stride=_per_axis(lambda a: out.stride[a] if sizes[a][0] > 1 else 0))
    return _NoField(
        f"{what} pools {h}x{w} into {oh}x{ow}: its windows are not of one size at one stride, "
        "so no single receptive field describes its units (use an input size that divides evenly)"
    )


def _last_dims(geo: _Geo, n: int, what: str) -> Any:
    """Linear / LayerNorm on the last `n` dims: pointwise unless they include H or W."""
    covered = geo.dims[-n:] if n else ()
    if "H" in covered or "W" in covered:
        return _NoField(
            f"{what} mixes the map's rows or columns (it acts on dims {covered} of a "
            f"{'x'.join(geo.dims)} value)",
            global_=True,
        )
    return geo


def _along(geo: _Geo, dim: Any, what: str) -> Any:
    if _label(geo.dims, dim) in ("H", "W", "?"):
        return _NoField(f"{what} along dim {dim} mixes the map's rows or columns", global_=True)
    return geo


def _reduced(geo: _Geo, dim: Any, keepdim: bool, what: str) -> Any:
    """A reduction over channels keeps the grid (CBAM); over H or W it is global."""
    n = len(geo.dims)
    dims = (
        range(n) if dim is None or dim == () else (dim if isinstance(dim, (tuple, list)) else [dim])
    )
    dims = {int(d) % n for d in dims}
    if any(geo.dims[d] in ("H", "W") for d in dims):
        return _NoField(f"{what} reduces over the map's rows or columns", global_=True)
    if keepdim:
        return geo
    return replace(geo, dims=tuple(lab for d, lab in enumerate(geo.dims) if d not in dims))


def _permuted(geo: _Geo, perm: Sequence[int]) -> _Geo:
    n = len(geo.dims)
    return replace(geo, dims=tuple(geo.dims[int(p) % n] for p in perm))


def _permute_call(geo: _Geo, target: Any, bound: dict) -> _Geo:
    n = len(geo.dims)
    name = target if isinstance(target, str) else target.__name__
    if name == "permute":
        return _permuted(geo, bound["dims"])
    if name in ("transpose", "swapaxes", "swapdims"):
        a, b = (int(v) % n for v in list(bound.values())[1:3])
        perm = list(range(n))
        perm[a], perm[b] = perm[b], perm[a]
        return _permuted(geo, perm)
    src, dst = list(bound.values())[1:3]  # movedim / moveaxis
    src = [int(s) % n for s in (src if isinstance(src, (tuple, list)) else [src])]
    dst = [int(d) % n for d in (dst if isinstance(dst, (tuple, list)) else [dst])]
    perm: list[int | None] = [None] * n
    for s, d in zip(src, dst, strict=True):
        perm[d] = s
    rest = iter(i for i in range(n) if i not in src)
    return _permuted(geo, [p if p is not None else next(rest) for p in perm])


def _reshaped(geo: _Geo, x: Any, value: Any, what: str) -> Any:
    """A reshape keeps the grid when H and W come through whole (channel shuffles, squeeze);
    merging them with other dims (flatten) mixes the map."""
    if not isinstance(x, torch.Tensor) or not isinstance(value, torch.Tensor):
        return _NoField(f"the receptive field of {what} is not known")
    shape, out = list(x.shape), list(value.shape)
    ih, iw = geo.dims.index("H"), geo.dims.index("W")
    if iw == ih + 1:
        prefix, suffix = math.prod(shape[:ih]), math.prod(shape[iw + 1 :])
        for k in range(len(out) - 1):
            if (
                math.prod(out[:k]) == prefix
                and out[k : k + 2] == shape[ih : iw + 1]
                and math.prod(out[k + 2 :]) == suffix
            ):
                lead = ["C"] * k
                if k and geo.dims[0] == "N" and out[0] == shape[0]:
                    lead[0] = "N"
                return replace(geo, dims=(*lead, "H", "W", *["C"] * (len(out) - k - 2)))
    return _NoField(
        f"{what} reshapes {tuple(shape[1:])} into {tuple(out[1:])}: the map's rows or columns "
        "do not come through whole (they are split, as into windows, or merged with other dims)",
        global_=True,
    )


def _split(geo: _Geo, dim: Any, value: Any, what: str) -> Any:
    if _label(geo.dims, dim) in ("H", "W", "?"):
        return _NoField(f"{what} splits the map along dim {dim}, its rows or columns")
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    if all(isinstance(p, torch.Tensor) and p.ndim == len(geo.dims) for p in parts):
        return [geo] * len(parts)
    n = len(geo.dims)
    return [
        replace(geo, dims=tuple(lab for d, lab in enumerate(geo.dims) if d != int(dim) % n))
    ] * len(parts)


def _upsampled(what: str, x: Any, value: Any, geo: _Geo, resize) -> Any:
    """Interpolation (nearest, bilinear, bicubic, area; any size or scale): which input units
    each output unit reads is found by running `resize` (the op itself) on one-hot maps, one
    per input row (column); then `_finer` gives the field."""
    if not _is_map(x) or not _is_map(value) or not geo.channels_first:
        return _NoField(f"{what} resizes dims that are not the map's rows and columns")
    size_in, size_out = pair(x.shape[-2:]), pair(value.shape[-2:])
    up = size_out[0] >= size_in[0] and size_out[1] >= size_in[1]
    verb = "upsamples" if up else "resizes"
    change = f"{verb} the map {size_in} to {size_out}"
    try:
        reads = (
            _resize_reads(resize, size_in, size_out, 0),
            _resize_reads(resize, size_in, size_out, 1),
        )
    except Exception as err:  # pragma: no cover - the op ran on the real map just before
        return _NoField(f"{what} {change}; which units it reads is not known ({err})")
    steps = _per_axis(lambda a: Fraction(geo.stride[a] * size_in[a], size_out[a]))
    why = (
        f"{what} {change}: neighbouring units read the same input units, so their windows are "
        "not spaced by one stride"
    )
    return _finer(geo, f"{what} {change}", why, reads, steps)


def _resize_reads(resize, size_in: Pair, size_out: Pair, axis: int) -> list:
    """For each output unit of `resize` along `axis`: the first and last input unit (inclusive)
    with a nonzero weight, or None. Runs on one-hot rows (columns), a chunk at a time."""
    n = size_in[axis]
    reads = torch.zeros(n, size_out[axis], dtype=torch.bool)
    chunk = max(1, min(n, (1 << 22) // (size_out[0] * size_out[1])))
    for first in range(0, n, chunk):
        c = min(chunk, n - first)
        hot = torch.zeros(1, c, *size_in)
        k = torch.arange(c)
        if axis == 0:
            hot[0, k, first + k, :] = 1.0
        else:
            hot[0, k, :, first + k] = 1.0
        with torch.no_grad():
            out = resize(hot)
        if tuple(out.shape[-2:]) != size_out:
            raise ValueError(f"the probe gave {tuple(out.shape[-2:])}")
        reads[first : first + c] = out[0].abs().amax(dim=2 - axis) > 0
    found = reads.any(0)
    lo = reads.int().argmax(0)
    hi = n - 1 - reads.flip(0).int().argmax(0)
    return [(int(lo[o]), int(hi[o])) if found[o] else None for o in range(size_out[axis])]


def _transposed(what: str, x: Any, value: Any, geo: _Geo, w: G.Window | None) -> Any:
    """A transposed convolution: unit o reads i = (o + p - k*d) / s for its taps k (`geometry.
    transposed_reads`). At stride 1 that is a convolution padded by d(k-1) - p (an exact
    field); at stride s > 1 units read differently placed taps: a bound at stride J/s."""
    if w is None:
        return _NoField(f"the window of {what} is not known")
    if not _is_map(x) or not _is_map(value) or not geo.channels_first:
        return _NoField(f"{what} slides over dims that are not the map's rows and columns")
    size_out = pair(value.shape[-2:])
    reads = _per_axis(lambda a: G.transposed_reads(w, size_out[a], a))
    steps = _per_axis(lambda a: Fraction(geo.stride[a], w.stride[a]))
    stride = w.stride[0] if w.stride[0] == w.stride[1] else "×".join(map(str, w.stride))
    why = (
        f"{what} is a transposed convolution at stride {stride}: neighbouring units read "
        "differently placed taps, so their windows are not spaced by one stride"
    )
    return _finer(geo, what, why, reads, steps)


def _finer(geo: _Geo, what: str, why: str, reads, steps: tuple[Fraction, Fraction]) -> Any:
    """The field of a map whose unit o reads input units reads[axis][o] = (first, last) (None:
    none), per axis; `steps` is how far the units step in input pixels (the input's stride
    over the upsampling factor). Exact where each unit reads a window at one stride from the
    previous one; else the smallest field at one stride that holds every unit's window
    (marked a bound, with `why`); none where a unit steps by less than a pixel."""
    axes = []
    for a in (0, 1):
        got = _finer_axis(reads[a], geo.size[a], geo.stride[a], geo.offset[a], steps[a])
        if isinstance(got, str):
            return _NoField(f"{what}: {('rows', 'columns')[a]} {got}")
        axes.append(got)
    exact = all(e for *_, e in axes)
    note = geo.note or (
        "" if exact else f"{why}; the field is the smallest at one stride that holds every unit's"
    )
    return replace(
        geo,
        size=(axes[0][0], axes[1][0]),
        stride=(axes[0][1], axes[1][1]),
        offset=(axes[0][2], axes[1][2]),
        exact=geo.exact and exact,
        note=note,
    )


def _finer_axis(reads: list, size: int, stride: int, offset: int, step: Fraction) -> Any:
    """(size, stride, offset, exact) along one axis (see `_finer`), or why there is none.

    Unit o sees pixels [lo*J + O, hi*J + O + S) where (lo, hi) = reads[o] and the input map's
    field is (S, J, O). With a whole-pixel stride J', the smallest field holding them all
    starts at min(lo*J - o*J') + O and ends at max(hi*J + S - o*J') + O; its size is convex in
    J', so the best J' is found by walking from the nearest whole number to `step`."""
    units = [(o, r) for o, r in enumerate(reads) if r is not None]
    if not units:
        return "read none of the input"
    every = len(units) == len(reads)
    if stride == 0:  # every input unit has the same window
        return size, 0, offset, every
    if len({r for _, r in units}) == 1:  # every unit reads the same input units
        lo, hi = units[0][1]
        return (hi - lo) * stride + size, 0, offset + lo * stride, every
    if step < 1:
        return (
            f"step by {float(step):.3g} input pixels from unit to unit (stride {stride} over the "
            f"upsampling), less than one: no field at a whole-pixel stride holds its units"
        )

    def hull(j: int) -> tuple[int, int]:
        start = min(lo * stride - o * j for o, (lo, _) in units)
        end = max(hi * stride + size - o * j for o, (_, hi) in units)
        return end - start, start

    j = max(1, round(step))
    best = hull(j)
    for d in (-1, 1):
        while j + d >= 1 and hull(j + d)[0] < best[0]:
            j += d
            best = hull(j)
    extent, start = best
    exact = every and all(
        lo * stride - o * j == start and hi * stride + size - o * j == start + extent
        for o, (lo, hi) in units
    )
    return extent, j, offset + start, exact


#: probe images per forward when an opaque block is measured (memory: a batch of its maps)
PROBE_BATCH = 32


class _Probe:
    """Which input pixels each unit of an opaque block depends on, measured at this call.

    The block runs on copies of each input map with one row (then one column) set to NaN, a
    batch of them at a time beside the map itself: NaN goes through every arithmetic op it
    meets (a product with a zero weight, a max, a ReLU, zero padding adds none), so the units
    it reaches are those computed from that row, whatever the weights or values. Per axis,
    output unit o reads the input units from the first to the last row that reaches it; a
    window at one stride reproducing those reads (clipped to the map) gives an exact field
    (`_fit_window`), anything else the smallest at one stride that holds them (`_finer`,
    a bound), every unit reading every pixel the whole map. The layers inside the block that
    its forward calls (Python blocks; TorchScript calls none) are measured in the same runs.

    Dependence through an op that drops NaN (`torch.where`, comparisons, `nan_to_num`) is not
    seen; control flow on values sees NaN, not the image. A map in the batch reaching the
    clean copy (statistics over the batch) makes the probes run one image at a time.
    """

    def __init__(self, module, inner: dict, args: tuple, kwargs: dict, geos, gkw) -> None:
        self.module = module
        self.leaves, self.spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        self.geos = _leaf_geos(tuple(args), tuple(geos)) + _leaf_geos(dict(kwargs), dict(gkw))
        self.inner: dict[str, Any] = {}
        self._seen: dict[Any, Any] = {}  # target -> what the hooks saw in one run
        hooks = [
            m.register_forward_hook(lambda m, a, out, n=n: self._hook(n, out))
            for n, m in inner.items()
            if not isinstance(m, torch.jit.ScriptModule)
        ]
        self._record = False
        self.failed = ""  # why measuring failed (a block that refuses NaN, say)
        self.hits: dict[int, dict] = {}
        try:
            with torch.no_grad():
                self.value = module(*args, **kwargs)
                self._record = True
                for i, (leaf, geo) in enumerate(zip(self.leaves, self.geos, strict=True)):
                    if isinstance(leaf, torch.Tensor) and isinstance(geo, (_Geo, _NoField)):
                        try:
                            self.hits[i] = self._probe(i)
                        except Exception as err:
                            self.failed = f"{type(err).__name__}: {err}"
                            break
        finally:
            for h in hooks:
                h.remove()

    def _hook(self, name: str, out: Any) -> None:
        if not self._record:
            self.inner.pop(name, None)
            self.inner[name] = out  # the last call, ordered by when it returned
            return
        self._seen[name] = _nan_summary(out)

    def _probe(self, i: int) -> dict:
        """{target: (rows, cols, any)} for NaN in input leaf `i`: rows[r] the output rows that
        NaN in input row r reaches (likewise columns); any[k] whether probe k reaches it."""
        t, geo = self.leaves[i], self.geos[i]
        grid = isinstance(geo, _Geo) and geo.dims == NCHW and t.ndim == 4
        if not t.is_floating_point():
            return {}
        if grid:
            h, w = t.shape[-2:]
            n = h + w
        else:
            h = w = 0
            n = 1

        def probe(k: int) -> torch.Tensor:
            x = t[:1].clone()
            if not grid:
                x.fill_(float("nan"))
            elif k < h:
                x[..., k, :] = float("nan")
            else:
                x[..., k - h] = float("nan")
            return x

        runs = self._runs(i, probe, n)
        out: dict = {}
        for target, summaries in runs.items():
            rows = cols = None
            if len(summaries) != n:  # not computed in every run (a branch): not measured
                out[target] = (None, None, [True])
                continue
            if grid and all(s[1] is not None for s in summaries):
                rows = torch.stack([s[1] for s in summaries[:h]])
                cols = torch.stack([s[2] for s in summaries[h:]])
            out[target] = (rows, cols, [s[0] for s in summaries])
        return out

    def _runs(self, i: int, probe, n: int) -> dict:
        """Each target's NaN summary for probes `probe(0)` .. `probe(n - 1)`: batched beside the
        clean map, or one probe at a time where a NaN reached the clean map's slot."""
        for batch in (PROBE_BATCH, 1):
            got: dict[Any, list] = {}
            mixed = False
            step = max(1, batch - 1)
            for start in range(0, n, step):
                chunk = [probe(k) for k in range(start, min(n, start + step))]
                clean = batch > 1
                x = torch.cat([self.leaves[i][:1], *chunk]) if clean else torch.cat(chunk)
                seen = self._run(i, x)
                for target, (anyk, rows, cols) in seen.items():
                    if clean and bool(anyk[0]):
                        mixed = True
                    lo = 1 if clean else 0
                    got.setdefault(target, []).extend(
                        (
                            bool(anyk[k]),
                            None if rows is None else rows[k],
                            None if cols is None else cols[k],
                        )
                        for k in range(lo, len(anyk))
                    )
                if mixed:
                    break
            if not mixed:
                return got
        return got

    def _run(self, i: int, x: torch.Tensor) -> dict:
        n = x.shape[0]
        base = self.leaves[i].shape[0]
        leaves = [
            x
            if j == i
            else (
                leaf[:1].repeat(n, *[1] * (leaf.ndim - 1))
                if isinstance(leaf, torch.Tensor) and leaf.ndim and leaf.shape[0] == base
                else leaf
            )
            for j, leaf in enumerate(self.leaves)
        ]
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        self._seen = {}
        with _structural_kernels(x):
            value = self.module(*args, **kwargs)
        seen = dict(self._seen)
        for k, v in enumerate(pytree.tree_leaves(value)):
            seen[k] = _nan_summary(v)
        return {t: v for t, v in seen.items() if v is not None}

    def field(self, target: Any, value: Any, what: str, why: str) -> Any:
        """The field of `target` (an output leaf's index, or an inner layer's name), whose
        value (at the real call) is `value`: measured from each input map that reaches it."""
        if not isinstance(value, torch.Tensor):
            return None
        if self.failed:
            return _NoField(f"{what} is opaque ({why}) and measuring it failed ({self.failed})")
        parts, problem = [], None
        for i, runs in self.hits.items():
            got = runs.get(target)
            if got is None or not any(got[2]):
                continue  # this input does not reach it
            geo, (rows, cols, _) = self.geos[i], got
            if isinstance(geo, _NoField):
                problem = problem or geo
            elif not _is_map(value):
                problem = problem or _NoField(
                    f"{what} gives shape {_shape(value)}, not a (C, H, W) feature map",
                    global_=True,
                )
            elif rows is None:
                problem = problem or _NoField(
                    f"{what} is opaque ({why}) and its input's grid could not be measured"
                )
            else:
                parts.append(_measured_field(geo, rows, cols, what, why))
        if problem is not None:
            return problem
        if not parts:
            return None
        return _first_problem(parts) or (parts[0] if len(parts) == 1 else _union(parts, what))


def _nan_summary(out: Any) -> tuple | None:
    """(per image: any NaN; per image and output row: any NaN; likewise columns) of a
    tensor, the rows and columns only for a (N, C, H, W) map; None for anything else."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.ndim == 0:
        return None
    nan = torch.isnan(out)
    anyk = nan.flatten(1).any(1) if out.ndim > 1 else nan
    if out.ndim != 4:
        return anyk.cpu(), None, None
    return anyk.cpu(), nan.any(3).any(1).cpu(), nan.any(2).any(1).cpu()


@contextlib.contextmanager
def _structural_kernels(x: torch.Tensor):
    """cuDNN off while probing a CUDA map: its FFT and Winograd convolutions would carry a NaN
    to units outside the window (the plain kernels keep each unit's sum to its window)."""
    if x.is_cuda:
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield


def _reads(hit: torch.Tensor) -> list:
    """hit[i, o]: input unit i reaches output unit o -> per o the first and last i, or None."""
    n = hit.shape[0]
    found = hit.any(0)
    lo = hit.int().argmax(0)
    hi = n - 1 - hit.flip(0).int().argmax(0)
    return [(int(lo[o]), int(hi[o])) if found[o] else None for o in range(hit.shape[1])]


def _fit_window(reads: list, n: int) -> list | None:
    """The unclipped (first, last) of each unit when the reads, clipped to units 0..n-1, are
    one window at one stride (unit o reads o*s + a .. o*s + b); else None. Where the clipping
    hides a window's end (every unit reads the first unit, say), the smallest window that
    gives the same reads."""
    m = len(reads)
    if n <= 1 or m <= 1 or any(r is None for r in reads):
        return None
    lows = [(o, lo) for o, (lo, _) in enumerate(reads) if lo > 0]
    highs = [(o, hi) for o, (_, hi) in enumerate(reads) if hi < n - 1]
    steps = []
    for points in (lows, highs):
        if len(points) >= 2:
            (o0, v0), (o1, v1) = points[0], points[-1]
            steps += [(v1 - v0) // (o1 - o0)] if (v1 - v0) % (o1 - o0) == 0 else []
    steps += [-(-n // m), n // m, 1]
    for s in dict.fromkeys(v for v in steps if v >= 1):
        a = {lo - o * s for o, lo in lows}
        b = {hi - o * s for o, hi in highs}
        if len(a) > 1 or len(b) > 1:
            continue
        first = a.pop() if a else -(m - 1) * s
        last = b.pop() if b else n - 1
        if first <= last and all(
            max(o * s + first, 0) == lo and min(o * s + last, n - 1) == hi
            for o, (lo, hi) in enumerate(reads)
        ):
            return [(o * s + first, o * s + last) for o in range(m)]
    return None


def _measured_field(
    geo: _Geo, rows: torch.Tensor, cols: torch.Tensor, what: str, why: str
) -> _Geo | _NoField:
    """The field of an opaque block's output from `geo`, its input's, and the measured reads:
    rows[r, o] whether NaN in input row r reaches output row o (cols alike)."""
    hits = (rows, cols)
    reads = [_reads(hits[a]) for a in (0, 1)]
    n_in = (rows.shape[0], cols.shape[0])
    n_out = (rows.shape[1], cols.shape[1])
    whole = all(r == (0, n_in[a] - 1) for a in (0, 1) for r in reads[a])
    if whole and n_in != (1, 1):
        if n_out == (1, 1):
            return _NoField(f"{what} pools the whole map into one position", global_=True)
        return _NoField(
            f"{what} is opaque ({why}); measured, each of its units depends on every pixel of "
            "its input",
            global_=True,
        )
    fitted = [_fit_window(reads[a], n_in[a]) or reads[a] for a in (0, 1)]
    steps = _per_axis(lambda a: Fraction(geo.stride[a] * n_in[a], n_out[a]))
    bound = (
        f"{what} is opaque ({why}); measured, its units read windows that are not spaced by "
        "one stride"
    )
    return _finer(geo, what, bound, fitted, steps)


def _unsupported(name: str, geos: list, value: Any, args: tuple) -> Any:
    why = _no_field(name, geos, value)
    if why is not None:
        return why
    x = next((a for a in args if _is_map(a)), None)
    if x is not None and tuple(value.shape[-2:]) == (1, 1) and tuple(x.shape[-2:]) != (1, 1):
        return _NoField(f"{name} pools the whole map into one position", global_=True)
    return _NoField(f"the receptive field of {name} is not known (unsupported operation)")


def _getitem_field(args, gargs, value) -> Any:
    """Indexing a tuple picks that element's field; indexing a map's channels keeps its field
    and a slice of its rows or columns crops (and strides) the grid."""
    container, index = args[0], args[1]
    geo = gargs[0]
    if isinstance(geo, (tuple, list)):
        return geo[index] if isinstance(index, (int, slice)) else geo
    if not isinstance(geo, _Geo) or not isinstance(container, torch.Tensor):
        return geo
    index = index if isinstance(index, tuple) else (index,)
    if sum(i is Ellipsis for i in index) > 1 or any(isinstance(i, torch.Tensor) for i in index):
        return _NoField(f"the receptive field of indexing with {index!r} is not known")
    used = sum(i is not None and i is not Ellipsis for i in index)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = (*index[:at], *[slice(None)] * (container.ndim - used), *index[at + 1 :])
    index = (*index, *[slice(None)] * (container.ndim - used))
    dims, offset, stride, d = [], list(geo.offset), list(geo.stride), 0
    for i in index:
        if i is None:
            dims.append("C")
            continue
        label = geo.dims[d]
        if label in ("H", "W"):
            a = 0 if label == "H" else 1
            if not isinstance(i, slice):
                return _NoField(f"indexing with {index!r} picks one row or column of the map")
            start, _, step = i.indices(container.shape[d])
            offset[a] += start * stride[a]
            stride[a] *= step
            dims.append(label)
        elif isinstance(i, (slice, list, tuple)):
            dims.append(label)
        d += 1
    if "H" not in dims or "W" not in dims:
        return _NoField(f"indexing with {index!r} drops the map's grid", global_=True)
    new = replace(
        geo, stride=(stride[0], stride[1]), offset=(offset[0], offset[1]), dims=tuple(dims)
    )
    return new if _is_map(value, new) else _NoField(f"indexing with {index!r} is not understood")


class FieldAnalysis:
    """Receptive fields of every layer of `model` for one input size, from one traced run."""

    def __init__(self, model: nn.Module, run: _FieldRun, input_size: Pair):
        self.model = model
        self.input_size = input_size
        self._run = run

    def names(self, *, channels_last: bool = False) -> list[str]:
        """Layers that have a receptive field, in call order: (C, H, W) maps, and with
        `channels_last` also the (H, W, C) maps inside ConvNeXt-style blocks; maps whose units
        mix the whole map have the whole image as their field."""
        layouts = (NCHW, ("N", "H", "W", "C")) if channels_last else (NCHW,)
        return [
            n
            for n, g in self._run.fields.items()
            if (isinstance(g, _Geo) and g.dims in layouts) or self._whole(n)
        ]

    def _whole(self, name: str) -> bool:
        """`name` outputs a grid (a 3-dim map, not 1x1) computed from a whole-map mix."""
        geo, shape = self._run.fields.get(name), self._run.shapes.get(name)
        grid = shape is not None and len(shape) == 3 and tuple(shape[-2:]) != (1, 1)
        return isinstance(geo, _NoField) and geo.global_ and grid

    def field(self, layer: LayerRef, *, channels_last: bool = False) -> ReceptiveField:
        """The receptive field of `layer`; a ValueError says why a layer has none.

        A channels-last (H, W, C) map is an error unless `channels_last` (its field is then
        returned with `layout="HWC"`): top patches and feature maps index channels at dim 1.
        """
        name, _ = resolve_layer(self.model, layer)
        geo = self._run.fields.get(name)
        shape = self._run.shapes.get(name)
        kind = self._run.types.get(name, "?")
        names = self.names()
        some = names if len(names) <= 8 else [*names[:4], "...", *names[-3:]]
        valid = f"{len(names)} layers have a receptive field: {', '.join(some)}"
        if isinstance(geo, _Geo):
            return self._map_field(name, geo, channels_last, valid)
        if geo is None:
            raise ValueError(f"{self._unreached(name)}; {valid}")
        if self._whole(name):
            return ReceptiveField(
                layer=name,
                size=self.input_size,
                stride=(0, 0),
                offset=(0, 0),
                output_shape=shape,
                input_size=self.input_size,
                kind="image",
                note=f"its units mix whole rows, columns or the whole map: {geo.reason}",
            )
        if not geo.global_:
            raise ValueError(
                f"Cannot compute the receptive field of layer {name!r} ({kind}, output shape "
                f"{shape}): {geo.reason}; {valid}"
            )
        raise ValueError(
            f"Layer {name!r} ({kind}, output shape {shape}) has no spatial output, so it has no "
            f"receptive field and no patches: {geo.reason}; {valid}"
        )

    def _map_field(self, name: str, geo: _Geo, channels_last: bool, valid: str) -> ReceptiveField:
        """The field of a map: (C, H, W), or (H, W, C) with `channels_last`; else why not."""
        shape = self._run.shapes.get(name)
        layout = {NCHW: "CHW", ("N", "H", "W", "C"): "HWC"}.get(geo.dims)
        if layout == "CHW" or (layout == "HWC" and channels_last):
            return ReceptiveField(
                layer=name,
                size=geo.size,
                stride=geo.stride,
                offset=geo.offset,
                output_shape=shape,
                input_size=self.input_size,
                gated=geo.gated,
                layout=layout,
                shifted=geo.shifted,
                kind="exact" if geo.exact else "bound",
                note=geo.note,
            )
        dims = "x".join(geo.dims[1:])
        raise ValueError(
            f"Layer {name!r} ({self._run.types.get(name, '?')}, output shape {shape}) is a {dims} "
            f"map, not (C, H, W): its units have a {geo.size[0]}×{geo.size[1]} field at stride "
            f"{geo.stride}, but patches and feature maps read channels at dim 1"
            + (" (pass channels_last=True for its field)" if layout == "HWC" else "")
            + f"; {valid}"
        )

    def _unreached(self, name: str) -> str:
        """Why layer `name`, which the run gave no field, has none."""
        if name in self._run.fields:
            return (
                f"Layer {name!r} does not depend on the input image, so it has no receptive field"
            )
        inside = [m for m in self._run.untraceable if m == "" or name.startswith(m + ".")]
        if inside:
            why = self._run.untraceable[inside[0]]
            return (
                f"Cannot compute the receptive field of layer {name!r}: torch.fx could not "
                f"trace {inside[0] or 'the model'!r} ({why})"
            )
        return f"Layer {name!r} is never called by the forward pass"


def analyse_fields(
    model: nn.Module, input_size: int | Pair = (224, 224), *, channels: int | None = None
) -> FieldAnalysis:
    """Trace `model` and run one zero image of `input_size` through it, recording every field."""
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
    size = pair(input_size)
    run = _FieldRun()
    x = example_input(model, size, channels).to(model_device(model))
    with inference_view(model) as (view, _):
        try:
            run.module(view, "", (x,), {}, (_INPUT,), {})
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
