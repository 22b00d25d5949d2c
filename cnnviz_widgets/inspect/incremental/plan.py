"""Which rectangle of each node's output an occluding patch changes; which nodes go full.

A window op (kernel k, stride s, dilation d, padding p before) computes output row o from
input rows [o*s - p, o*s - p + d(k-1)]. If its input changed only in rows [i0, i0 + n), the
output changes only in rows

    ceil((i0 + p - d(k-1)) / s)  <=  o  <=  floor((i0 + n - 1 + p) / s),

clipped to the map (`window_range`; columns alike). A pointwise op keeps its input's rectangle;
an elementwise op over several maps or a channel concatenation takes the union of theirs
(`union`). Every position of a batch gets a rectangle of one size (the largest any needs) at its
own offsets; one that would cross the border is shifted inward, not clipped, so a batch stays
one dense (B, C, h, w) tensor. A node goes *full* (computed on whole maps) when its rectangle
covers all of its map or more than `full_threshold` of it (the gather would cost more than it
saves), when its op mixes the whole map or is not known (`ops.action`), or when it reads a
full node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import ops
from .ops import BINARY, CAT, GLOBAL, POINTWISE, UNKNOWN, WINDOW, WindowSpec

if TYPE_CHECKING:
    from .engine import IncrementalEngine

#: Fraction of a map's area above which a node is computed in full instead of by rectangles.
#: Measured with ``python benchmarks/occlusion.py --measure-threshold`` on the 2-core CPU of the
#: development machine (batch 64, 3x3 convs of ResNet-18's shapes, gather/paste included): the
#: rectangle path costs 0.2-0.45 of the full path at 20 % of the map, 0.64-0.71 at 50 %,
#: 0.75-0.95 at 62-68 %, and breaks even at 82-88 % (64 ch @ 56: 0.88, 128 @ 28: 0.82,
#: 256 @ 14: > 0.86). See benchmarks/RESULTS.md.
DEFAULT_FULL_THRESHOLD = 0.8

#: how a planned node is computed: on rectangles (by its action) or in full
FULL, OUTPUT = "full", "output"


@dataclass
class Rect:
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

    def same(self, other: Rect) -> bool:
        return (
            self.h == other.h
            and self.w == other.w
            and torch.equal(self.oy, other.oy)
            and torch.equal(self.ox, other.ox)
        )


def window_range(
    i0: torch.Tensor, n: int, k: int, s: int, d: int, pad: int, out: int
) -> tuple[torch.Tensor, int]:
    """Output rows [o0, o0 + size) of a windowed op that read input rows [i0, i0 + n)."""
    span = d * (k - 1)
    lo = torch.div(i0 + pad - span + (s - 1), s, rounding_mode="floor").clamp(min=0)
    hi = torch.div(i0 + n - 1 + pad, s, rounding_mode="floor").clamp(max=out - 1)
    size = int((hi - lo + 1).max().item()) if i0.numel() else 1
    size = max(1, min(size, out))
    return lo.clamp(max=out - size), size


def union(rects: list[Rect], H: int, W: int) -> Rect:
    """The smallest rectangle (one size for all positions) holding each of ``rects``."""
    lo_y = rects[0].oy
    lo_x = rects[0].ox
    hi_y = rects[0].oy + rects[0].h
    hi_x = rects[0].ox + rects[0].w
    for g in rects[1:]:
        lo_y = torch.minimum(lo_y, g.oy)
        lo_x = torch.minimum(lo_x, g.ox)
        hi_y = torch.maximum(hi_y, g.oy + g.h)
        hi_x = torch.maximum(hi_x, g.ox + g.w)
    h = max(1, min(H, int((hi_y - lo_y).max().item())))
    w = max(1, min(W, int((hi_x - lo_x).max().item())))
    return Rect(lo_y.clamp(max=H - h), lo_x.clamp(max=W - w), h, w, H, W)


@dataclass
class NodePlan:
    """One node of a plan: ``how`` it is computed (an `ops` action on rectangles, FULL or
    OUTPUT), what it reads (``src`` or the map ``operands`` of a union) and its window."""

    node: fx.Node
    how: str
    src: fx.Node | None = None
    operands: list[fx.Node] = field(default_factory=list)
    spec: WindowSpec | None = None


@dataclass
class IncrementalPlan:
    """Per-node geometry and executors for one patch size and one list of positions."""

    patch: tuple[int, int]
    ys: torch.Tensor
    xs: torch.Tensor
    geos: dict[fx.Node, Rect] = field(default_factory=dict)
    #: the affected nodes in graph order, each with how it is computed
    order: list[NodePlan] = field(default_factory=list)
    #: the same as executors (made by `run.Executor.compile`)
    steps: list[tuple[fx.Node, Any]] = field(default_factory=list)
    full_nodes: list[str] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)
    #: ops executed on rectangles: node name -> (h, w) / (H, W) area fraction
    rect_fracs: dict[str, float] = field(default_factory=dict)

    @property
    def positions(self) -> int:
        return int(self.ys.numel())


def make_plan(
    engine: IncrementalEngine, patch: tuple[int, int], ys: torch.Tensor, xs: torch.Tensor
) -> IncrementalPlan:
    """The geometry of patches of size ``patch`` at top-left corners (ys[k], xs[k])."""
    return _Planner(engine, IncrementalPlan(patch=patch, ys=ys, xs=xs)).plan()


class _Planner:
    def __init__(self, engine: IncrementalEngine, plan: IncrementalPlan) -> None:
        self.engine = engine
        self.base = engine.base
        self.modules = engine.modules
        self.affected = engine.affected
        self.threshold = engine.full_threshold
        self.p = plan

    def plan(self) -> IncrementalPlan:
        p, e = self.p, self.engine
        H, W = e.image.shape[-2:]
        for node in e.nodes:
            if node not in self.affected:
                continue
            if node is e.input_node:  # the only affected placeholder
                p.geos[node] = Rect(p.ys, p.xs, p.patch[0], p.patch[1], H, W)
            elif node.op == "output":
                p.order.append(NodePlan(node, OUTPUT))
            else:
                ins = [a for a in node.all_input_nodes if a in self.affected]
                step = self._rect(node) if all(a in p.geos for a in ins) else None
                if step is None:  # e.g. add(full, rect): full, known
                    p.full_nodes.append(node.name)
                    step = NodePlan(node, FULL)
                else:
                    p.rect_fracs[node.name] = p.geos[node].frac
                p.order.append(step)
        return p

    def _unknown(self, node: fx.Node) -> None:
        self.p.unknown_ops.append(ops.op_name(node, self.modules))

    def _too_big(self, g: Rect) -> bool:
        return g.frac >= 1.0 or g.frac > self.threshold

    def _is4d(self, n: Any) -> bool:
        v = self.base.get(n) if isinstance(n, fx.Node) else None
        return isinstance(v, torch.Tensor) and v.dim() == 4

    def _rect(self, node: fx.Node) -> NodePlan | None:
        """How ``node`` is computed on rectangles (its rectangle in ``geos``), or None: full."""
        out = self.base[node]
        how, spec = ops.action(node, self.modules, self.base)
        if how == UNKNOWN:
            self._unknown(node)
            return None
        if how == GLOBAL or not isinstance(out, torch.Tensor) or out.dim() != 4:
            return None
        if how == WINDOW:
            assert spec is not None
            return self._window(node, spec)
        if how == POINTWISE:
            return self._pointwise(node)
        assert how in (BINARY, CAT)
        return self._union(node, how)

    def _pointwise(self, node: fx.Node) -> NodePlan | None:
        """The input's rectangle, when one map of the output's grid is the only input that
        changes and no other input has a spatial extent."""
        out = self.base[node]
        inputs = [a for a in node.all_input_nodes if a in self.affected]
        src = inputs[0] if len(inputs) == 1 else None
        others = [a for a in node.all_input_nodes if a is not src]
        if (
            src is None
            or not self._is4d(src)
            or src not in self.p.geos
            or self.base[src].shape[-2:] != out.shape[-2:]
            or any(ops.spatial(self.base[a]) for a in others)
        ):
            self._unknown(node)
            return None
        self.p.geos[node] = self.p.geos[src]
        return NodePlan(node, POINTWISE, src=src)

    def _window(self, node: fx.Node, spec: WindowSpec) -> NodePlan | None:
        """Conv, pooling, constant padding: the input rectangle through `window_range`."""
        src = spec.src
        if not self._is4d(src) or src not in self.p.geos:
            self._unknown(node)
            return None
        gin = self.p.geos[src]
        hout, wout = self.base[node].shape[-2:]
        wnd = spec.window
        (kh, kw), (sh, sw), (dh, dw), (pt, pl) = wnd.kernel, wnd.stride, wnd.dilation, wnd.padding
        oy, h = window_range(gin.oy, gin.h, kh, sh, dh, pt, hout)
        ox, w = window_range(gin.ox, gin.w, kw, sw, dw, pl, wout)
        g = Rect(oy, ox, h, w, hout, wout)
        if self._too_big(g):
            return None
        self.p.geos[node] = g
        return NodePlan(node, WINDOW, src=src, spec=spec)

    def _union(self, node: fx.Node, how: str) -> NodePlan | None:
        """Elementwise ops over maps and torch.cat(dim=1): the union of the operands'
        rectangles. Every tensor operand is a map of the output's size or broadcasts over it."""
        hout, wout = self.base[node].shape[-2:]
        if how == CAT:
            tensors = ops.bound(node, "tensors")
            dim = ops.bound(node, "dim", ops.bound(node, "axis", 0))
            if dim not in (1, -3) or not isinstance(tensors, (list, tuple)):
                self._unknown(node)
                return None
            operands = list(tensors)
        else:
            operands = list(node.all_input_nodes)
        maps: list[fx.Node] = []
        for a in operands:
            if isinstance(a, fx.Node) and isinstance(self.base[a], torch.Tensor):
                t = self.base[a]
                if t.dim() == 4 and tuple(t.shape[-2:]) == (hout, wout) and t.shape[0] == 1:
                    maps.append(a)
                elif a in self.affected or ops.spatial(t):
                    self._unknown(node)
                    return None
        rect_in = [a for a in maps if a in self.affected]
        if not rect_in or any(a not in self.p.geos for a in rect_in):
            self._unknown(node)
            return None
        g = union([self.p.geos[a] for a in rect_in], hout, wout)
        if self._too_big(g):
            return None
        self.p.geos[node] = g
        return NodePlan(node, how, operands=maps)


def plan_macs(engine: IncrementalEngine, plan: IncrementalPlan) -> tuple[float, float]:
    """(incremental, full) multiply-accumulates per position of the convolutions and linears.

    Their ratio is the FLOP bound on the speedup of incremental over full recompute.
    """
    inc = full = 0.0
    for node in engine.nodes:
        out = engine.base.get(node)
        if not isinstance(out, torch.Tensor) or node.op not in ("call_module", "call_function"):
            continue
        spec = ops.window_spec(node, engine.modules, engine.base)
        if spec is not None and spec.kind == "conv":
            f = float(spec.weight(engine.base)[0].numel() * out.numel())
        elif node.op == "call_module" and type(engine.modules[node.target]) is nn.Linear:
            f = float(engine.modules[node.target].in_features * out.numel())
        elif node.op == "call_function" and node.target is F.linear:
            f = float(ops.value(ops.bound(node, "weight"), engine.base).shape[1] * out.numel())
        else:
            continue
        full += f
        if node not in engine.affected:
            continue
        g = plan.geos.get(node)
        inc += f * g.frac if g is not None and node.name not in plan.full_nodes else f
    return inc, full
