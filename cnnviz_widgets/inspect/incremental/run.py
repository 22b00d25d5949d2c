"""Running a plan on a batch of positions.

`Executor.compile` turns each planned node into one step, a closure made once per plan: a
window op gathers its input windows (`gather.Rows`) and runs the op on them with padding 0
(average pooling then divides by PyTorch's own divisor map); a pointwise op runs on the
rectangle; a union op gathers each operand at the union's offsets; a full node runs the op on
B whole maps, its rectangle inputs pasted into copies of their base map (once per node and
batch). `Executor.run` calls the steps in graph order and frees each value after its last use.
A value is (RECT, (B, C, h, w) at the plan's offsets) or (FULL, the node's value for the batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..geometry import OpKind, classify
from .fold import Folds
from .gather import Rows, crop
from .ops import POINTWISE, WINDOW, WindowSpec
from .plan import FULL, OUTPUT, IncrementalPlan, NodePlan

if TYPE_CHECKING:
    from .engine import IncrementalEngine

_RECT = "r"
_FULL = "f"

Values = dict[fx.Node, Any]


class _Batch:
    """The positions ``sl`` of a plan (``b`` of them) and the full maps made for them."""

    __slots__ = ("b", "mat", "sl")

    def __init__(self, sl: slice, b: int) -> None:
        self.sl = sl
        self.b = b
        self.mat: dict[fx.Node, torch.Tensor] = {}


def callable_of(node: fx.Node, modules: dict[str, nn.Module]) -> Callable[..., Any]:
    """What an fx node calls: its module, its function, or a method of its first argument."""
    if node.op == "call_module":
        return modules[node.target]
    if node.op == "call_function":
        return node.target
    if node.op == "call_method":
        name = node.target

        def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(obj, name)(*args, **kwargs)

        return method
    raise AssertionError(node.op)


def call(node: fx.Node, modules: dict[str, nn.Module], args: tuple, kwargs: dict) -> Any:
    """``node``'s op on ``args`` and ``kwargs``."""
    if node.op == "call_method" and node.target in ("view", "view_as") and args:
        # full maps built from rectangles are channels-last; .view needs the model's layout
        args = (args[0].contiguous(), *args[1:])
    return callable_of(node, modules)(*args, **kwargs)


class Executor:
    """Runs plans of one engine: its base values, the row tables and divisors made from them."""

    def __init__(self, engine: IncrementalEngine, folds: Folds) -> None:
        self.base = engine.base
        self.modules = engine.modules
        self.affected = engine.affected
        self.input_node = engine.input_node
        self.output_node = engine.output_node
        self.dtype = engine.image.dtype
        self.folds = folds
        self._rows: dict[tuple[Any, ...], Rows] = {}
        self._divisors: dict[fx.Node, torch.Tensor] = {}
        # last use of each node in the graph order (to free batch values early)
        self._index = {n: i for i, n in enumerate(engine.nodes)}
        self._last_use: dict[fx.Node, int] = {}
        for i, n in enumerate(engine.nodes):
            for a in n.all_input_nodes:
                self._last_use[a] = i

    # ---------------------------------------------------------------- running
    def run(self, plan: IncrementalPlan, start: int, stop: int, update: torch.Tensor) -> Any:
        """The model's output for the positions ``start:stop`` of ``plan``; ``update`` is
        (B, C, ph, pw), the new image inside each position's patch."""
        sl = slice(start, stop)
        b = stop - start
        batch = _Batch(sl, b)
        vals: Values = {self.input_node: (_RECT, update.to(self.dtype))}
        index = self._index
        result: Any = None
        for node, step in plan.steps:
            v = step(vals, batch)
            if node is self.output_node:
                result = v[1]
                break
            vals[node] = v
            i = index[node]
            for a in node.all_input_nodes:
                if self._last_use.get(a) == i:
                    vals.pop(a, None)
                    batch.mat.pop(a, None)
        if result is None:  # the output does not depend on the image
            out = self.base[self.output_node]
            return out.expand(b, *out.shape[1:])
        return result

    def compile(self, plan: IncrementalPlan) -> list[tuple[fx.Node, Callable[..., Any]]]:
        """One step per planned node."""
        steps = []
        for s in plan.order:
            if s.how == OUTPUT:
                make = self._output
            elif s.how == FULL:
                make = self._full
            elif s.how == WINDOW:
                make = self._window
            elif s.how == POINTWISE:
                make = self._pointwise
            else:
                make = self._union
            steps.append((s.node, make(plan, s)))
        return steps

    # ---------------------------------------------------------------- full maps
    def rows(
        self, node: fx.Node, pads: tuple[int, int, int, int] = (0, 0, 0, 0), value: float = 0.0
    ) -> Rows:
        """The row table of ``node``'s base map with ``pads`` (top, bottom, left, right)."""
        key = (node, pads, value)
        r = self._rows.get(key)
        if r is None:
            r = Rows(self.base[node], pads, value)
            self._rows[key] = r
        return r

    def _full_value(self, plan: IncrementalPlan, n: fx.Node, vals: Values, batch: _Batch) -> Any:
        kind, v = vals[n]
        if kind == _FULL:
            return v
        t = batch.mat.get(n)
        if t is None:
            g = plan.geos[n]
            t = self.rows(n).materialize(v, g.oy[batch.sl], g.ox[batch.sl], batch.b)
            batch.mat[n] = t
        return t

    def _whole(self, plan: IncrementalPlan, vals: Values, batch: _Batch) -> Callable:
        """A node's value as a whole map: its base value where the patch does not reach it."""

        def arg(n: fx.Node) -> Any:
            if n not in self.affected:
                return self.base[n]
            return self._full_value(plan, n, vals, batch)

        return arg

    def _output(self, plan: IncrementalPlan, s: NodePlan) -> Callable[..., Any]:
        def output(vals: Values, batch: _Batch) -> Any:
            arg = self._whole(plan, vals, batch)
            return (_FULL, fx.graph.map_arg(self.output_node.args[0], arg))

        return output

    def _full(self, plan: IncrementalPlan, s: NodePlan) -> Callable[..., Any]:
        node = s.node
        fast = self.folds.fast(node)
        if fast is not None:
            src = node.args[0]

            def fast_full(vals: Values, batch: _Batch) -> Any:
                return (_FULL, fast(self._full_value(plan, src, vals, batch)))

            return fast_full

        expand = _concatenates(node)

        def full(vals: Values, batch: _Batch) -> Any:
            arg = self._whole(plan, vals, batch)
            args = fx.graph.map_arg(node.args, arg)
            kwargs = fx.graph.map_arg(node.kwargs, arg)
            if expand:  # base operands (batch 1) next to the batch's maps
                args, kwargs = _expand_batch(args, batch.b), _expand_batch(kwargs, batch.b)
            return (_FULL, call(node, self.modules, args, kwargs))

        return full

    # ---------------------------------------------------------------- rectangles
    def _pointwise(self, plan: IncrementalPlan, s: NodePlan) -> Callable[..., Any]:
        node, src = s.node, s.src
        fast = self.folds.fast(node)
        if fast is not None:

            def fast_pointwise(vals: Values, batch: _Batch) -> Any:
                return (_RECT, fast(vals[src][1]))

            return fast_pointwise

        fn = callable_of(node, self.modules)

        def pointwise(vals: Values, batch: _Batch) -> Any:
            def arg(n: fx.Node) -> Any:
                return vals[n][1] if n is src else self.base[n]

            args = fx.graph.map_arg(node.args, arg)
            kwargs = fx.graph.map_arg(node.kwargs, arg)
            return (_RECT, fn(*args, **kwargs))

        return pointwise

    def _window(self, plan: IncrementalPlan, s: NodePlan) -> Callable[..., Any]:
        """Gather each position's input window (the previous rectangle pasted into the padded
        base), then run the op on the windows with padding 0."""
        node, spec = s.node, s.spec
        assert spec is not None
        src = spec.src
        gin, g = plan.geos[src], plan.geos[node]
        oy, ox, h, w = g.oy, g.ox, g.h, g.w
        hin, win = self.base[src].shape[-2:]
        wnd = spec.window
        (kh, kw), (sh, sw), (dh, dw), (pt, pl) = wnd.kernel, wnd.stride, wnd.dilation, wnd.padding
        # padding after the last row / column: as much as the last output window reads
        pb = max(0, (g.H - 1) * sh + dh * (kh - 1) + 1 - hin - pt)
        pr = max(0, (g.W - 1) * sw + dw * (kw - 1) + 1 - win - pl)
        rows = self.rows(src, (pt, pb, pl, pr), spec.value)
        wh = (h - 1) * sh + dh * (kh - 1) + 1
        ww = (w - 1) * sw + dw * (kw - 1) + 1
        wy_all = oy * sh
        wx_all = ox * sw
        kind = spec.kind
        if kind == "conv":
            if node in self.folds.conv:
                cw, cb = self.folds.conv[node]
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

        def window(vals: Values, batch: _Batch) -> Any:
            sl = batch.sl
            x = rows.gather(vals[src][1], gin.oy[sl], gin.ox[sl], wy_all[sl], wx_all[sl], wh, ww)
            y = op(x)
            if kind == "avg":
                d = crop(div, oy[sl], ox[sl], h, w)
                y = y / d.to(y.dtype)
            return (_RECT, y)

        return window

    def _avg_divisor(self, node: fx.Node, spec: WindowSpec) -> torch.Tensor:
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

    def _union(self, plan: IncrementalPlan, s: NodePlan) -> Callable[..., Any]:
        """Each map operand at the union's offsets: as it is where its rectangle is the
        union's, else gathered (its rectangle pasted into its base)."""
        node, maps = s.node, s.operands
        g = plan.geos[node]
        direct = {a for a in maps if a in self.affected and plan.geos[a].same(g)}
        fn = callable_of(node, self.modules)
        rows = {a: self.rows(a) for a in maps if a not in direct}

        def union(vals: Values, batch: _Batch) -> Any:
            sl = batch.sl
            oy, ox = g.oy[sl], g.ox[sl]
            local: dict[fx.Node, Any] = {}
            for a in maps:
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


def _concatenates(node: fx.Node) -> bool:
    """torch.cat and its twins, torch.stack: operands must agree in batch size."""
    if node.op != "call_function":
        return False
    return node.target is torch.stack or classify(node.op, node.target) is OpKind.CAT


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
