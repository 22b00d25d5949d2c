"""Krypton-style exact incremental inference for occlusion maps.

An occluding patch changes, in each layer's output, only a rectangle that grows with the layer's
kernel and shrinks with its stride. :class:`IncrementalEngine` traces the model with ``torch.fx``,
keeps the activation of every graph node for the unoccluded image (the *base*), and for a batch of
patch positions recomputes per node only that rectangle:

* **Geometry** is planned once per (patch size, positions) for all positions at once
  (:meth:`IncrementalEngine.plan`): per node a rectangle of one size ``(h, w)`` shared by every
  position (the largest any position needs) and per-position top-left offsets. A rectangle that
  would cross the map's border is shifted inward instead of clipped, so a batch stays one dense
  ``(B, C, h, w)`` tensor.
* **Gather**: a windowed op (conv, pooling) needs, for each position, the input window under its
  output rectangle. The base input is kept as a padded, channels-last row table
  ``(Hp * Wp, C)`` (zero padding for convolutions and average pooling, ``-inf`` for max pooling,
  extra rows at the bottom/right for ``ceil_mode``), the previous node's updated rectangles are
  appended to that table as ``B * h * w`` more rows, and one integer index tensor
  ``(B, wh, ww)`` says, for every window pixel, whether it comes from the base or from the update.
  A single ``index_select`` then builds every window of the batch; it comes out channels-last,
  which is the layout oneDNN/cuDNN convolutions like best. The op runs on the windows with padding
  0 (average pooling divides by the exact PyTorch divisor map of the layer).
* **Pointwise** ops (BatchNorm in eval, ReLU and friends, dropout in eval) keep the rectangle; a
  **residual add** or a **channel concatenation** takes the union of its inputs' rectangles
  (gathering an input whose rectangle is smaller).
* **Switch to full**: once a node's rectangle exceeds ``full_threshold`` of its map (the gather
  costs more than it saves; see :data:`DEFAULT_FULL_THRESHOLD`), or at a global op (flatten,
  adaptive pooling, linear), the rectangle is pasted into ``B`` copies of the base map
  (``index_copy_``) and the rest of the network runs normally on the batch.
* **Unknown ops** that receive a rectangle fall back to that full computation from that node on,
  with one warning naming the op: never a wrong answer. Modules are matched by exact type, so a
  subclass with its own ``forward`` is treated as unknown.

Everything is device-agnostic (CPU and CUDA): index tensors live on the model's device.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .geometry import (
    Pad,
    Window,
    bind,
    pad_of_call,
    pad_of_module,
    window_of_call,
    window_of_module,
)
from .tracing import Traced
from .tracing import trace as trace_graph

__all__ = [
    "DEFAULT_FULL_THRESHOLD",
    "IncrementalEngine",
    "IncrementalPlan",
    "UnsupportedOpWarning",
]

#: Fraction of a map's area above which a node is computed in full instead of by rectangles.
#: Measured with ``python benchmarks/occlusion.py --measure-threshold`` on the 2-core CPU of the
#: development machine (batch 64, 3x3 convs of ResNet-18's shapes, gather/paste included): the
#: rectangle path costs 0.2-0.45 of the full path at 20 % of the map, 0.64-0.71 at 50 %,
#: 0.75-0.95 at 62-68 %, and breaks even at 82-88 % (64 ch @ 56: 0.88, 128 @ 28: 0.82,
#: 256 @ 14: > 0.86). See benchmarks/RESULTS.md.
DEFAULT_FULL_THRESHOLD = 0.8


class UnsupportedOpWarning(UserWarning):
    """An op the incremental engine does not know; it computes in full from there (exact)."""


# --------------------------------------------------------------------------------------------
# op tables (exact types / functions only: a subclass may override forward)

_POINTWISE_MODULES: tuple[type, ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Mish,
    nn.Softplus,
    nn.PReLU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
)

_POINTWISE_FUNCTIONS: set[Any] = {
    F.relu,
    torch.relu,
    F.relu6,
    F.silu,
    F.gelu,
    F.sigmoid,
    torch.sigmoid,
    F.tanh,
    torch.tanh,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.mish,
    F.softplus,
    F.dropout,
    F.dropout2d,
    torch.clamp,
    torch.clip,
    torch.abs,
    torch.exp,
    torch.neg,
    torch.square,
    torch.sqrt,
}

_POINTWISE_METHODS: set[str] = {
    "relu",
    "sigmoid",
    "tanh",
    "clamp",
    "clip",
    "abs",
    "exp",
    "neg",
    "square",
    "sqrt",
    "contiguous",
}

_BINARY_FUNCTIONS: set[Any] = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
}

_BINARY_METHODS: set[str] = {"add", "sub", "mul", "div"}

# Ops that consume a whole map by nature: computed in full without a warning.
_GLOBAL_MODULES: tuple[type, ...] = (
    nn.Flatten,
    nn.Linear,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_GLOBAL_FUNCTIONS: set[Any] = {
    torch.flatten,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.linear,
    torch.mean,
    torch.sum,
    torch.amax,
    getattr,
}
_GLOBAL_METHODS: set[str] = {"view", "reshape", "flatten", "mean", "sum", "amax", "size"}


def _op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} ({node.target})"
    if node.op == "call_method":
        return f"Tensor.{node.target} ({node.name})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"{name} ({node.name})"


# --------------------------------------------------------------------------------------------
# geometry


@dataclass
class _Geo:
    """A rectangle of size (h, w) at per-position offsets (oy, ox) in an (H, W) map."""

    oy: torch.Tensor
    ox: torch.Tensor
    h: int
    w: int
    H: int
    W: int

    @property
    def frac(self) -> float:
        return (self.h * self.w) / float(self.H * self.W)

    def same(self, other: _Geo) -> bool:
        return (
            self.h == other.h
            and self.w == other.w
            and torch.equal(self.oy, other.oy)
            and torch.equal(self.ox, other.ox)
        )


def _window_range(
    i0: torch.Tensor, n: int, k: int, s: int, d: int, pad: int, out: int
) -> tuple[torch.Tensor, int]:
    """Output rows [o0, o0 + size) of a windowed op that read input rows [i0, i0 + n)."""
    span = d * (k - 1)
    lo = torch.div(i0 + pad - span + (s - 1), s, rounding_mode="floor").clamp(min=0)
    hi = torch.div(i0 + n - 1 + pad, s, rounding_mode="floor").clamp(max=out - 1)
    size = int((hi - lo + 1).max().item()) if i0.numel() else 1
    size = max(1, min(size, out))
    return lo.clamp(max=out - size), size


def _union(geos: list[_Geo], H: int, W: int) -> _Geo:
    lo_y = geos[0].oy
    lo_x = geos[0].ox
    hi_y = geos[0].oy + geos[0].h
    hi_x = geos[0].ox + geos[0].w
    for g in geos[1:]:
        lo_y = torch.minimum(lo_y, g.oy)
        lo_x = torch.minimum(lo_x, g.ox)
        hi_y = torch.maximum(hi_y, g.oy + g.h)
        hi_x = torch.maximum(hi_x, g.ox + g.w)
    h = max(1, min(H, int((hi_y - lo_y).max().item())))
    w = max(1, min(W, int((hi_x - lo_x).max().item())))
    return _Geo(lo_y.clamp(max=H - h), lo_x.clamp(max=W - w), h, w, H, W)


# --------------------------------------------------------------------------------------------
# gathers


class _Rows:
    """A node's base map as a padded channels-last row table plus room for the updates."""

    def __init__(self, base: torch.Tensor, pads: tuple[int, int, int, int], value: float) -> None:
        pt, pb, pl, pr = pads
        x = base
        if any(pads):
            x = F.pad(base, (pl, pr, pt, pb), value=value)
        _, c, hp, wp = x.shape
        self.rows = x[0].permute(1, 2, 0).reshape(hp * wp, c).contiguous()
        self.mbase = hp * wp
        self.hp, self.wp, self.c = hp, wp, c
        self.pt, self.pl = pt, pl
        self.buf: torch.Tensor | None = None

    def table(self, n_upd: int, dtype: torch.dtype) -> torch.Tensor:
        need = self.mbase + n_upd
        buf = self.buf
        if buf is None or buf.shape[0] < need or buf.dtype != dtype:
            buf = torch.empty((need, self.c), dtype=dtype, device=self.rows.device)
            buf[: self.mbase].copy_(self.rows)
            self.buf = buf
        return buf[:need]

    def gather(
        self,
        upd: torch.Tensor | None,
        iy: torch.Tensor | None,
        ix: torch.Tensor | None,
        wy: torch.Tensor,
        wx: torch.Tensor,
        wh: int,
        ww: int,
    ) -> torch.Tensor:
        """Windows (B, C, wh, ww), channels-last, at padded offsets (wy, wx).

        ``upd`` (B, C, ih, iw) at unpadded offsets (iy, ix) overrides the base where it lies.
        """
        dev = self.rows.device
        b = wy.shape[0]
        ys = wy[:, None] + torch.arange(wh, device=dev)
        xs = wx[:, None] + torch.arange(ww, device=dev)
        idx = ys[:, :, None] * self.wp + xs[:, None, :]
        if upd is None:
            src = self.rows
        else:
            ih, iw = upd.shape[2], upd.shape[3]
            n = b * ih * iw
            src = self.table(n, self.rows.dtype)
            src[self.mbase :].copy_(upd.permute(0, 2, 3, 1).reshape(n, self.c))
            ry = ys - (iy + self.pt)[:, None]
            rx = xs - (ix + self.pl)[:, None]
            iny = (ry >= 0) & (ry < ih)
            inx = (rx >= 0) & (rx < iw)
            bi = torch.arange(b, device=dev)[:, None] * ih
            uidx = self.mbase + (bi + ry)[:, :, None] * iw + rx[:, None, :]
            idx = torch.where(iny[:, :, None] & inx[:, None, :], uidx, idx)
        out = src.index_select(0, idx.reshape(-1))
        return out.view(b, wh, ww, self.c).permute(0, 3, 1, 2)

    def materialize(
        self, upd: torch.Tensor | None, oy: torch.Tensor, ox: torch.Tensor, b: int
    ) -> torch.Tensor:
        """``b`` copies of the (unpadded) base map with ``upd`` pasted at (oy, ox)."""
        assert self.mbase == self.hp * self.wp and self.pt == 0 and self.pl == 0
        dev = self.rows.device
        hw = self.mbase
        full = self.rows.repeat(b, 1)
        if upd is not None:
            h, w = upd.shape[2], upd.shape[3]
            ys = oy[:, None] + torch.arange(h, device=dev)
            xs = ox[:, None] + torch.arange(w, device=dev)
            dest = (torch.arange(b, device=dev) * hw)[:, None, None] + (
                ys[:, :, None] * self.wp + xs[:, None, :]
            )
            src = upd.permute(0, 2, 3, 1).reshape(-1, self.c).to(full.dtype)
            full.index_copy_(0, dest.reshape(-1), src)
        return full.view(b, self.hp, self.wp, self.c).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------
# plan


@dataclass
class IncrementalPlan:
    """Per-node geometry and executors for one patch size and one list of positions."""

    patch: tuple[int, int]
    ys: torch.Tensor
    xs: torch.Tensor
    geos: dict[fx.Node, _Geo] = field(default_factory=dict)
    steps: list[tuple[fx.Node, Callable[..., Any]]] = field(default_factory=list)
    full_nodes: list[str] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)
    #: ops executed on rectangles: node name -> (h, w) / (H, W) area fraction
    rect_fracs: dict[str, float] = field(default_factory=dict)

    @property
    def positions(self) -> int:
        return int(self.ys.numel())


class _Ctx:
    __slots__ = ("b", "mat", "sl")

    def __init__(self, sl: slice, b: int) -> None:
        self.sl = sl
        self.b = b
        self.mat: dict[fx.Node, torch.Tensor] = {}


_RECT = "r"
_FULL = "f"


def trace(model: nn.Module, example: Any = None, leaf_modules: Any = ()) -> Traced:
    """The graph the engine runs (see :mod:`.tracing`); traced at ``example``'s shape if given.

    The engine retraces at the image's shape when given a graph traced at another one.
    """
    return trace_graph(model, example, leaf_modules)


class UnfaithfulGraphError(RuntimeError):
    """The traced graph cannot compute what the model computes (the caller goes full)."""


class IncrementalEngine:
    """Exact incremental occlusion inference for one model and one base image.

    ``model`` must be in eval mode on the image's device (``occlusion_map`` does that);
    ``image`` is (1, C, H, W); ``forward_args`` are the model's further inputs, held fixed.
    Raises whatever tracing raises for a model it cannot trace, or
    :class:`UnfaithfulGraphError` (``occlusion_map`` then falls back to full recompute with a
    warning). ``traced``: the graph of :func:`trace` made earlier at this image's shape.
    """

    def __init__(
        self,
        model: nn.Module,
        image: torch.Tensor,
        full_threshold: float = DEFAULT_FULL_THRESHOLD,
        warn: bool = True,
        fuse: bool = True,
        traced: Traced | None = None,
        forward_args: tuple[Any, ...] = (),
        leaf_modules: Any = (),
    ) -> None:
        self.full_threshold = float(full_threshold)
        self.warn = warn
        self._warned = False
        forward_args = tuple(forward_args)
        if traced is None or traced.input_shape != tuple(image.shape):
            traced = trace(model, (image, *forward_args), leaf_modules)
        if traced.unfaithful:
            raise UnfaithfulGraphError(
                "the model mutates a tensor in place through a view ("
                + ", ".join(traced.unfaithful)
                + ")"
            )
        self.traced = traced
        self.gm = traced.gm
        self.modules = dict(self.gm.named_modules())
        self.image = image
        self.nodes = list(self.gm.graph.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.input_node = placeholders[0]
        self._fixed_inputs: dict[fx.Node, Any] = {}
        for i, ph in enumerate(placeholders[1:]):
            if i < len(forward_args):
                self._fixed_inputs[ph] = forward_args[i]
            elif ph.args:  # a defaulted parameter of forward
                self._fixed_inputs[ph] = ph.args[0]
            else:
                raise ValueError(
                    f"the model's forward takes {len(placeholders)} inputs; pass the "
                    f"{len(placeholders) - 1} after the image as forward_args=(...)"
                )
        self.output_node = next(n for n in self.nodes if n.op == "output")
        self.affected: set[fx.Node] = set()
        for n in self.nodes:
            if n is self.input_node or any(a in self.affected for a in n.all_input_nodes):
                self.affected.add(n)
        self.base: dict[fx.Node, Any] = {}
        with torch.inference_mode():
            self._run_base(image)
        self._rows: dict[tuple[Any, ...], _Rows] = {}
        self._fold: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]] = {}
        self._fold_bn: set[fx.Node] = set()
        self._relu_inplace: set[fx.Node] = set()
        if fuse:
            with torch.inference_mode():
                self._find_folds()
        self._divisors: dict[fx.Node, torch.Tensor] = {}
        # last use of each node in the graph order (to free batch values early)
        self._index = {n: i for i, n in enumerate(self.nodes)}
        self._last_use: dict[fx.Node, int] = {}
        for i, n in enumerate(self.nodes):
            for a in n.all_input_nodes:
                self._last_use[a] = i

    def _find_folds(self) -> None:
        """Conv2d -> BatchNorm2d (eval) pairs: fold BN into the conv for the batched passes.

        The base pass keeps the model's own (unfolded) values; folding changes the batched
        results only by float rounding (~1e-7 relative). A ReLU right after a folded pair runs
        in place on the conv's fresh output.
        """
        for node in self.nodes:
            if node.op != "call_module" or type(self.modules[node.target]) is not nn.Conv2d:
                continue
            conv = self.modules[node.target]
            users = list(node.users)
            if conv.padding_mode != "zeros" or len(users) != 1:
                continue
            bn_node = users[0]
            if bn_node.op != "call_module" or len(bn_node.all_input_nodes) != 1:
                continue
            bn = self.modules[bn_node.target]
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
            self._fold[node] = (w.contiguous(memory_format=fmt), b.to(conv.weight.dtype))
            self._fold_bn.add(bn_node)
            bn_users = list(bn_node.users)
            if len(bn_users) == 1 and self._is_relu(bn_users[0]):
                self._relu_inplace.add(bn_users[0])

    def _is_relu(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return type(self.modules[node.target]) is nn.ReLU
        if node.op == "call_function":
            return node.target in (F.relu, torch.relu) and len(node.args) == 1
        return node.op == "call_method" and node.target == "relu" and len(node.args) == 1

    def _batched(self, node: fx.Node) -> Callable[..., Any] | None:
        """A faster equivalent for the batched passes (folded conv, identity BN, in-place ReLU)."""
        if node in self._fold:
            mod = self.modules[node.target]
            w, b = self._fold[node]

            def conv(x: torch.Tensor) -> torch.Tensor:
                return F.conv2d(x, w, b, mod.stride, mod.padding, mod.dilation, mod.groups)

            return conv
        if node in self._fold_bn:
            return _identity
        if node in self._relu_inplace:
            return F.relu_
        return None

    # ---------------------------------------------------------------- base pass
    def _callable(self, node: fx.Node) -> Callable[..., Any]:
        if node.op == "call_module":
            return self.modules[node.target]
        if node.op == "call_function":
            return node.target
        if node.op == "call_method":
            name = node.target

            def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
                return getattr(obj, name)(*args, **kwargs)

            return method
        raise AssertionError(node.op)

    def _call(self, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if node.op == "call_method" and node.target in ("view", "view_as") and args:
            # full maps built from rectangles are channels-last; .view needs the model's layout
            args = (args[0].contiguous(), *args[1:])
        return self._callable(node)(*args, **kwargs)

    def _run_base(self, image: torch.Tensor) -> None:
        env = self.base
        for node in self.nodes:
            if node.op == "placeholder":
                env[node] = image if node is self.input_node else self._fixed_inputs[node]
            elif node.op == "get_attr":
                env[node] = _fetch_attr(self.gm, node.target)
            elif node.op == "output":
                env[node] = fx.graph.map_arg(node.args[0], lambda n: env[n])
            else:
                args = fx.graph.map_arg(node.args, lambda n: env[n])
                kwargs = fx.graph.map_arg(node.kwargs, lambda n: env[n])
                env[node] = self._call(node, args, kwargs)

    @property
    def base_output(self) -> Any:
        return self.base[self.output_node]

    def _rows_for(
        self, node: fx.Node, pads: tuple[int, int, int, int] = (0, 0, 0, 0), value: float = 0.0
    ) -> _Rows:
        key = (node, pads, value)
        r = self._rows.get(key)
        if r is None:
            r = _Rows(self.base[node], pads, value)
            self._rows[key] = r
        return r

    # ---------------------------------------------------------------- planning
    def plan(self, patch: tuple[int, int], ys: torch.Tensor, xs: torch.Tensor) -> IncrementalPlan:
        """Geometry for patches of size ``patch`` with top-left corners (ys[k], xs[k])."""
        dev = self.image.device
        ys = ys.to(dev, torch.long)
        xs = xs.to(dev, torch.long)
        plan = IncrementalPlan(patch=patch, ys=ys, xs=xs)
        state: dict[fx.Node, str] = {}
        _, _, H, W = self.image.shape
        for node in self.nodes:
            if node not in self.affected:
                continue
            if node.op == "placeholder":  # only the image is affected
                plan.geos[node] = _Geo(ys, xs, patch[0], patch[1], H, W)
                state[node] = _RECT
                continue
            if node.op == "output":

                def out_step(vals: dict[fx.Node, Any], ctx: _Ctx) -> Any:
                    return self._exec_output(plan, vals, ctx)

                plan.steps.append((node, out_step))
                continue
            ins = [a for a in node.all_input_nodes if a in self.affected]
            if all(state[a] == _FULL for a in ins):
                self._add_full(plan, state, node)
                continue
            if any(state[a] == _FULL for a in ins):  # e.g. add(full, rect): full, known
                self._add_full(plan, state, node)
                continue
            step = self._plan_rect(plan, node)
            if step is None:
                self._add_full(plan, state, node)
            else:
                state[node] = _RECT
                plan.rect_fracs[node.name] = plan.geos[node].frac
                plan.steps.append((node, step))
        if plan.unknown_ops and self.warn and not self._warned:
            self._warned = True
            more = len(plan.unknown_ops) - 1
            warnings.warn(
                f"incremental occlusion does not know the op {plan.unknown_ops[0]}"
                + (f" (and {more} more)" if more > 0 else "")
                + "; computing in full from there on (exact, slower)",
                UnsupportedOpWarning,
                stacklevel=3,
            )
        return plan

    def _add_full(self, plan: IncrementalPlan, state: dict[fx.Node, str], node: fx.Node) -> None:
        state[node] = _FULL
        plan.full_nodes.append(node.name)

        def step(vals: dict[fx.Node, Any], ctx: _Ctx, node: fx.Node = node) -> Any:
            def arg(n: fx.Node) -> Any:
                if n not in self.affected:
                    return self.base[n]
                return self._full_value(plan, n, vals, ctx)

            args = fx.graph.map_arg(node.args, arg)
            kwargs = fx.graph.map_arg(node.kwargs, arg)
            if node.op == "call_function" and node.target in (torch.cat, torch.stack):
                args, kwargs = _expand_batch(args, ctx.b), _expand_batch(kwargs, ctx.b)
            return (_FULL, self._call(node, args, kwargs))

        fast = self._batched(node)
        if fast is not None:
            src = node.args[0]

            def fast_step(vals: dict[fx.Node, Any], ctx: _Ctx, node: fx.Node = node) -> Any:
                return (_FULL, fast(self._full_value(plan, src, vals, ctx)))

            plan.steps.append((node, fast_step))
            return
        plan.steps.append((node, step))

    def _full_value(
        self, plan: IncrementalPlan, n: fx.Node, vals: dict[fx.Node, Any], ctx: _Ctx
    ) -> Any:
        kind, v = vals[n]
        if kind == _FULL:
            return v
        t = ctx.mat.get(n)
        if t is None:
            g = plan.geos[n]
            t = self._rows_for(n).materialize(v, g.oy[ctx.sl], g.ox[ctx.sl], ctx.b)
            ctx.mat[n] = t
        return t

    def _exec_output(self, plan: IncrementalPlan, vals: dict[fx.Node, Any], ctx: _Ctx) -> Any:
        def arg(n: fx.Node) -> Any:
            if n not in self.affected:
                return self.base[n]
            return self._full_value(plan, n, vals, ctx)

        return (_FULL, fx.graph.map_arg(self.output_node.args[0], arg))

    def _too_big(self, g: _Geo) -> bool:
        return g.frac >= 1.0 or g.frac > self.full_threshold

    def _is4d(self, n: Any) -> bool:
        return (
            isinstance(n, fx.Node)
            and isinstance(self.base.get(n), torch.Tensor)
            and (self.base[n].dim() == 4)
        )

    def _plan_rect(self, plan: IncrementalPlan, node: fx.Node) -> Callable[..., Any] | None:
        """An executor computing ``node`` on rectangles, or None to compute it in full."""
        out = self.base[node]
        kind = self._classify(node)
        if kind == "unknown":
            plan.unknown_ops.append(_op_name(node, self.modules))
            return None
        if kind == "global" or not isinstance(out, torch.Tensor) or out.dim() != 4:
            return None
        if kind == "window":
            return self._plan_window(plan, node)
        if kind == "pointwise":
            return self._plan_pointwise(plan, node)
        # union ops: binary elementwise and channel concatenation
        return self._plan_union(plan, node, kind)

    def _plan_pointwise(self, plan: IncrementalPlan, node: fx.Node) -> Callable[..., Any] | None:
        out = self.base[node]
        inputs = [a for a in node.all_input_nodes if a in self.affected]
        src = inputs[0] if len(inputs) == 1 else None
        others = [a for a in node.all_input_nodes if a is not src]
        if (
            src is None
            or not self._is4d(src)
            or src not in plan.geos
            or self.base[src].shape[1:] != out.shape[1:]
            or any(_spatial(self.base[a]) for a in others)
        ):
            plan.unknown_ops.append(_op_name(node, self.modules))
            return None
        plan.geos[node] = plan.geos[src]
        fn = self._callable(node)
        fast = self._batched(node)
        if fast is not None:

            def fast_pointwise(vals: dict[fx.Node, Any], ctx: _Ctx) -> Any:
                return (_RECT, fast(vals[src][1]))

            return fast_pointwise

        def pointwise(vals: dict[fx.Node, Any], ctx: _Ctx) -> Any:
            def arg(n: fx.Node) -> Any:
                return vals[n][1] if n is src else self.base[n]

            args = fx.graph.map_arg(node.args, arg)
            kwargs = fx.graph.map_arg(node.kwargs, arg)
            return (_RECT, fn(*args, **kwargs))

        return pointwise

    def _classify(self, node: fx.Node) -> str:
        if node.op == "call_module":
            mod = self.modules[node.target]
            t = type(mod)
            if t in _POINTWISE_MODULES:
                return "pointwise"
            if t is nn.BatchNorm2d:
                ok = not mod.training and mod.running_mean is not None
                return "pointwise" if ok else "unknown"
            if t in _GLOBAL_MODULES:
                return "global"
            return "window" if _window_spec(node, self.modules, self.base) else "unknown"
        if node.op == "call_function":
            f = node.target
            if f in _POINTWISE_FUNCTIONS:
                if f in (F.dropout, F.dropout2d) and _bound(node, "training", True) is not False:
                    return "unknown"
                return "pointwise"
            if f is F.batch_norm:
                return "unknown" if _bound(node, "training") is not False else "pointwise"
            if f in _BINARY_FUNCTIONS:
                return "binary"
            if f is torch.cat:
                return "cat"
            if f in _GLOBAL_FUNCTIONS:
                return "global"
            return "window" if _window_spec(node, self.modules, self.base) else "unknown"
        if node.op == "call_method":
            m = node.target
            if m in _POINTWISE_METHODS:
                return "pointwise"
            if m in _BINARY_METHODS:
                return "binary"
            if m in _GLOBAL_METHODS:
                return "global"
        return "unknown"

    # windowed ops: convolution, max/average pooling, constant padding
    def _plan_window(self, plan: IncrementalPlan, node: fx.Node) -> Callable[..., Any] | None:
        spec = _window_spec(node, self.modules, self.base)
        assert spec is not None
        src = spec.src
        if not self._is4d(src) or src not in plan.geos:
            plan.unknown_ops.append(_op_name(node, self.modules))
            return None
        gin = plan.geos[src]
        xin = self.base[src]
        out = self.base[node]
        hin, win = xin.shape[2], xin.shape[3]
        hout, wout = out.shape[2], out.shape[3]
        wnd = spec.window
        (kh, kw), (sh, sw), (dh, dw), (pt, pl) = wnd.kernel, wnd.stride, wnd.dilation, wnd.padding
        oy, h = _window_range(gin.oy, gin.h, kh, sh, dh, pt, hout)
        ox, w = _window_range(gin.ox, gin.w, kw, sw, dw, pl, wout)
        g = _Geo(oy, ox, h, w, hout, wout)
        if self._too_big(g):
            return None
        plan.geos[node] = g
        pb = max(0, (hout - 1) * sh + dh * (kh - 1) + 1 - hin - pt)
        pr = max(0, (wout - 1) * sw + dw * (kw - 1) + 1 - win - pl)
        rows = self._rows_for(src, (pt, pb, pl, pr), spec.value)
        wh = (h - 1) * sh + dh * (kh - 1) + 1
        ww = (w - 1) * sw + dw * (kw - 1) + 1
        wy_all = oy * sh
        wx_all = ox * sw
        kind = spec.kind
        if kind == "conv":
            if node in self._fold:
                cw, cb = self._fold[node]
            else:
                cw, cb = spec.weight(self.base), spec.bias(self.base)
            groups = spec.groups

            def op(x: torch.Tensor) -> torch.Tensor:
                return F.conv2d(x, cw, cb, (sh, sw), 0, (dh, dw), groups)

        elif kind == "max":

            def op(x: torch.Tensor) -> torch.Tensor:
                return F.max_pool2d(x, (kh, kw), (sh, sw), 0, (dh, dw))

        elif kind == "avg":
            div = self._avg_divisor(node, spec)

            def op(x: torch.Tensor) -> torch.Tensor:
                return F.avg_pool2d(x, (kh, kw), (sh, sw), 0, divisor_override=1)

        else:  # constant padding: the gathered window is the padded rectangle

            def op(x: torch.Tensor) -> torch.Tensor:
                return x

        def window(vals: dict[fx.Node, Any], ctx: _Ctx) -> Any:
            sl = ctx.sl
            x = rows.gather(vals[src][1], gin.oy[sl], gin.ox[sl], wy_all[sl], wx_all[sl], wh, ww)
            y = op(x)
            if kind == "avg":
                d = _gather_map(div, oy[sl], ox[sl], h, w)
                y = y / d.to(y.dtype)
            return (_RECT, y)

        return window

    def _avg_divisor(self, node: fx.Node, spec: _WindowSpec) -> torch.Tensor:
        """The (Hout, Wout) divisor PyTorch's average pooling uses at each output."""
        d = self._divisors.get(node)
        if d is None:
            x = torch.ones_like(self.base[spec.src][:1, :1], dtype=torch.float64)
            kw = dict(
                kernel_size=spec.window.kernel,
                stride=spec.window.stride,
                padding=spec.window.padding,
                ceil_mode=spec.window.ceil_mode,
                count_include_pad=spec.window.count_include_pad,
            )
            if spec.divisor_override:
                o = F.avg_pool2d(x, divisor_override=1, **kw)
                d = torch.full_like(o, float(spec.divisor_override))
            else:
                s = F.avg_pool2d(x, divisor_override=1, **kw)
                a = F.avg_pool2d(x, **kw)
                d = torch.round(s / a)
            d = d[0, 0].to(self.base[node].dtype)
            self._divisors[node] = d
        return d

    # union ops: binary elementwise and torch.cat(dim=1)
    def _plan_union(
        self, plan: IncrementalPlan, node: fx.Node, kind: str
    ) -> Callable[..., Any] | None:
        out = self.base[node]
        hout, wout = out.shape[2], out.shape[3]
        if kind == "cat":
            tensors = _bound(node, "tensors")
            dim = _bound(node, "dim", 0)
            if dim not in (1, -3) or not isinstance(tensors, (list, tuple)):
                plan.unknown_ops.append(_op_name(node, self.modules))
                return None
            operands = list(tensors)
        else:
            operands = list(node.all_input_nodes)
        # every tensor operand must be a 4D map of the output's size, or broadcast spatially
        spatial: list[fx.Node] = []
        for a in operands:
            if isinstance(a, fx.Node) and isinstance(self.base[a], torch.Tensor):
                t = self.base[a]
                if t.dim() == 4 and tuple(t.shape[-2:]) == (hout, wout) and t.shape[0] == 1:
                    spatial.append(a)
                elif a in self.affected or _spatial(t):
                    plan.unknown_ops.append(_op_name(node, self.modules))
                    return None
        rect_in = [a for a in spatial if a in self.affected]
        if not rect_in or any(a not in plan.geos for a in rect_in):
            plan.unknown_ops.append(_op_name(node, self.modules))
            return None
        g = _union([plan.geos[a] for a in rect_in], hout, wout)
        if self._too_big(g):
            return None
        plan.geos[node] = g
        direct = {a for a in rect_in if plan.geos[a].same(g)}
        fn = self._callable(node)
        rows = {a: self._rows_for(a) for a in spatial if a not in direct}

        def union(vals: dict[fx.Node, Any], ctx: _Ctx) -> Any:
            sl = ctx.sl
            oy, ox = g.oy[sl], g.ox[sl]
            local: dict[fx.Node, Any] = {}
            for a in spatial:
                if a in direct:
                    local[a] = vals[a][1]
                elif a in self.affected:
                    ga = plan.geos[a]
                    local[a] = rows[a].gather(vals[a][1], ga.oy[sl], ga.ox[sl], oy, ox, g.h, g.w)
                else:
                    local[a] = rows[a].gather(None, None, None, oy, ox, g.h, g.w)

            def arg(n: fx.Node) -> Any:
                return local[n] if n in local else self.base[n]

            args = fx.graph.map_arg(node.args, arg)
            kwargs = fx.graph.map_arg(node.kwargs, arg)
            return (_RECT, fn(*args, **kwargs))

        return union

    # ---------------------------------------------------------------- execution
    def run(
        self, plan: IncrementalPlan, start: int, stop: int, update: torch.Tensor
    ) -> torch.Tensor:
        """Model output for the positions ``start:stop`` of ``plan``.

        ``update``: (B, C, ph, pw), the new image inside each position's rectangle (the
        patch at ``plan.ys, plan.xs``).
        """
        sl = slice(start, stop)
        b = stop - start
        ctx = _Ctx(sl, b)
        vals: dict[fx.Node, Any] = {}
        vals[self.input_node] = (_RECT, update.to(self.image.dtype))
        index = self._index
        result: Any = None
        for node, step in plan.steps:
            v = step(vals, ctx)
            if node is self.output_node:
                result = v[1]
                break
            vals[node] = v
            i = index[node]
            for a in node.all_input_nodes:
                if self._last_use.get(a) == i:
                    vals.pop(a, None)
                    ctx.mat.pop(a, None)
        if result is None:  # the output does not depend on the image
            out = self.base_output
            return out.expand(b, *out.shape[1:])
        return result


def _bound(node: fx.Node, name: str, default: Any = None) -> Any:
    """Argument ``name`` of a call however it was spelled (:func:`.geometry.bind`)."""
    try:
        return bind(node.op, node.target, node.args, node.kwargs).get(name, default)
    except TypeError:
        return default


@dataclass
class _WindowSpec:
    """A sliding-window op as the engine runs it: what it reads (``src``), the window
    (:class:`.geometry.Window`, or a 1x1 one for constant padding) and the op's own values."""

    kind: str  #: "conv", "max", "avg" or "pad"
    src: fx.Node
    window: Window
    value: float = 0.0  #: what the padding reads
    groups: int = 1
    weight_of: Any = None
    bias_of: Any = None
    divisor_override: Any = None

    def weight(self, base: dict[fx.Node, Any]) -> torch.Tensor:
        return _value(self.weight_of, base)

    def bias(self, base: dict[fx.Node, Any]) -> torch.Tensor | None:
        return _value(self.bias_of, base)


def _value(v: Any, base: dict[fx.Node, Any]) -> Any:
    return base[v] if isinstance(v, fx.Node) else v


def _window_spec(
    node: fx.Node, modules: dict[str, nn.Module], base: dict[fx.Node, Any]
) -> _WindowSpec | None:
    """The window of a conv/pool/pad call (module or function, any argument spelling) from
    :mod:`.geometry`, or None when ``node`` is not one the engine computes exactly."""
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
                return _WindowSpec("conv", src, window, groups=mod.groups,
                                   weight_of=mod.weight, bias_of=mod.bias)  # fmt: skip
            if window.mode in ("max", "avg"):
                return _pool_spec(src, window, getattr(mod, "divisor_override", None))
            return None
        return _pad_spec(src, pad_of_module(mod))
    if node.op != "call_function":
        return None
    try:
        names = bind(node.op, node.target, node.args, node.kwargs)
    except TypeError:
        return None
    src = names.get("input")
    if not isinstance(src, fx.Node):
        return None
    values = fx.graph.map_arg((node.args, node.kwargs), lambda n: base.get(n))
    window = window_of_call(node.target, *values)
    if window is None:
        return _pad_spec(src, pad_of_call(node.target, *values))
    if window.mode == "conv":
        return _WindowSpec("conv", src, window, groups=int(names.get("groups", 1)),
                           weight_of=names.get("weight"), bias_of=names.get("bias"))  # fmt: skip
    if names.get("return_indices") or window.mode not in ("max", "avg"):
        return None
    if any(isinstance(v, fx.Node) for k, v in names.items() if k != "input"):
        return None
    return _pool_spec(src, window, names.get("divisor_override"))


def _pool_spec(src: fx.Node, window: Window, divisor_override: Any) -> _WindowSpec:
    value = float("-inf") if window.mode == "max" else 0.0
    return _WindowSpec(window.mode, src, window, value=value, divisor_override=divisor_override)


def _pad_spec(src: fx.Node, pad: Pad | None) -> _WindowSpec | None:
    """Constant padding as a 1x1 window with that padding."""
    if pad is None or pad.mode != "constant" or min(pad.top, pad.bottom, pad.left, pad.right) < 0:
        return None
    window = Window((1, 1), (1, 1), (pad.top, pad.left), (1, 1), (pad.bottom, pad.right))
    return _WindowSpec("pad", src, window, value=pad.value)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _spatial(v: Any) -> bool:
    """True for a tensor with a spatial extent (it cannot broadcast against a rectangle)."""
    return isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[-2:].numel() > 1


def _gather_map(m: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, h: int, w: int):
    """(B, 1, h, w) crops of a (H, W) map at offsets (oy, ox)."""
    dev = m.device
    ys = oy[:, None] + torch.arange(h, device=dev)
    xs = ox[:, None] + torch.arange(w, device=dev)
    return m[ys[:, :, None], xs[:, None, :]].unsqueeze(1)


def _expand_batch(args: Any, b: int) -> Any:
    def fix(a: Any) -> Any:
        if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == 1 and b != 1:
            return a.expand(b, *a.shape[1:])
        if isinstance(a, (list, tuple)):
            return type(a)(fix(x) for x in a)
        if isinstance(a, dict):
            return {k: fix(v) for k, v in a.items()}
        return a

    return fix(args)


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def plan_macs(engine: IncrementalEngine, plan: IncrementalPlan) -> tuple[float, float]:
    """(incremental, full) multiply-accumulates per position of the convolutions and linears.

    Their ratio is the FLOP bound on the speedup of incremental over full recompute.
    """
    inc = full = 0.0
    for node in engine.nodes:
        out = engine.base.get(node)
        if not isinstance(out, torch.Tensor) or node.op not in ("call_module", "call_function"):
            continue
        spec = _window_spec(node, engine.modules, engine.base)
        if spec is not None and spec.kind == "conv":
            w = spec.weight(engine.base)
            f = float(w[0].numel() * out.numel())
        elif node.op == "call_module" and type(engine.modules[node.target]) is nn.Linear:
            f = float(engine.modules[node.target].in_features * out.numel())
        elif node.op == "call_function" and node.target is F.linear:
            f = float(_value(_bound(node, "weight"), engine.base).shape[1] * out.numel())
        else:
            continue
        full += f
        if node not in engine.affected:
            continue
        g = plan.geos.get(node)
        inc += f * g.frac if g is not None and node.name not in plan.full_nodes else f
    return inc, full
