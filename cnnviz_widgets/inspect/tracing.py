"""The model as a torch.fx graph that computes exactly what the model computes.

:class:`Tracer` is the one tracer here (the receptive fields trace with it too, every submodule
a leaf); :func:`trace` makes with it the graph the occlusion engine runs:

* **Shapes are concrete** (traced at one example input): ``x.size(1)``, ``x.shape[-2:]`` and
  ``x.dim()`` return ints, so shape-dependent code (timm's TF "same" padding, ``F.interpolate(x,
  size=y.shape[-2:])``, ``if x.shape[-1] > 8``) traces; the batch size stays symbolic, so
  ``x.view(x.size(0), -1)`` works for any batch.
* **Untraceable blocks become leaves**: a submodule whose forward cannot be traced (control flow
  on values, unsupported Python) is kept as one opaque call, found by itself; ``leaf_modules``
  (names or types, as in ``torchvision.models.feature_extraction``) forces it.
* **Modules made inside forward** (`nn.ReLU(inplace=True)(a + b)`, `nn.MaxPool2d(2)(x)`) are not
  submodules, so no `call_module` node can name them: they are traced through, their ops
  recorded as functions. ``x.data`` is ``x.detach()`` (its sizes concrete too).
* **Opaque blocks**: TorchScript modules (and the view's stand-in for one, `view.ScriptBlock`)
  are always leaves (`opaque`): their code is not Python to trace; the receptive fields measure
  their geometry instead (`receptive.py`).
* **In-place ops are made functional** with their real semantics: ``F.relu(x, inplace=True)``,
  ``x.relu_()``, ``a.add_(b)``, ``nn.ReLU(inplace=True)`` become out-of-place ops, and every later
  use of the mutated tensor reads the op's result. A mutation through a view (whose base is read
  later) cannot be expressed that way; :class:`Traced` records it in ``unfaithful`` and the
  engine computes in full.

The graph is checked against the real model on the base image by its user (the engine), so a
Python-level alias fx cannot see never gives a silently wrong map.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import operator
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ._locks import ThreadTracer

__all__ = ["Traced", "Tracer", "opaque", "trace"]

#: in-place functions -> their out-of-place twins
_INPLACE_FUNCTIONS: dict[Any, Any] = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
    torch.relu_: torch.relu,
    F.relu_: F.relu,
    F.elu_: F.elu,
    F.leaky_relu_: F.leaky_relu,
    F.hardtanh_: F.hardtanh,
    torch.sigmoid_: torch.sigmoid,
    torch.tanh_: torch.tanh,
    torch.clamp_: torch.clamp,
    torch.exp_: torch.exp,
}

#: ops whose result may share memory with their first argument
_VIEW_METHODS = {
    "view", "view_as", "reshape", "reshape_as", "permute", "transpose", "t", "flatten",
    "unflatten", "squeeze", "unsqueeze", "expand", "expand_as", "narrow", "chunk", "split",
    "unbind", "select", "detach", "contiguous", "movedim", "swapaxes", "as_strided",
    "diagonal", "__getitem__", "unfold", "T", "mT",
}  # fmt: skip
_VIEW_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
    torch.unsqueeze, torch.narrow, torch.chunk, torch.split, torch.unbind, torch.select,
    torch.movedim, torch.swapaxes, torch.t, operator.getitem, torch.detach, torch.diagonal,
}  # fmt: skip
#: methods ending in "_" that are not mutations of their receiver
_NOT_INPLACE_METHODS = {"requires_grad_", "share_memory_"}


@dataclass
class Traced:
    """A graph of the model at one input shape, functional, with what could not be made so."""

    gm: fx.GraphModule
    input_shape: tuple[int, ...] | None
    #: modules kept opaque: auto, TorchScript (`opaque`) or asked
    leaves: list[str] = field(default_factory=list)
    unfaithful: list[str] = field(default_factory=list)  #: ops that defeat the functional graph


class _ShapeProxy(fx.Proxy):
    """A Proxy whose non-batch sizes are the example's concrete ints."""

    def _example(self) -> torch.Tensor | None:
        ex = self.node.meta.get("example")
        return ex if isinstance(ex, torch.Tensor) else None

    def size(self, dim: int | None = None) -> Any:
        ex = self._example()
        if ex is None:
            args = (self,) if dim is None else (self, dim)
            return self.tracer.create_proxy("call_method", "size", args, {})
        if dim is None:
            return _Shape(self, ex.shape)
        d = dim % ex.dim()
        if d == 0:
            return self.tracer.create_proxy("call_method", "size", (self, 0), {})
        return int(ex.shape[d])

    @property
    def shape(self) -> Any:
        return self.size()

    def dim(self) -> Any:
        ex = self._example()
        return (
            ex.dim()
            if ex is not None
            else self.tracer.create_proxy("call_method", "dim", (self,), {})
        )

    @property
    def ndim(self) -> Any:
        return self.dim()

    @property
    def data(self) -> Any:
        """`x.data` as `x.detach()`: the same values, and a Proxy whose sizes are concrete
        (ShuffleNet's `n, c, h, w = x.data.size()`)."""
        return self.tracer.create_proxy("call_method", "detach", (self,), {})

    def __getattr__(self, k: str) -> Any:
        if k in ("dtype", "device", "is_cuda"):
            ex = self._example()
            if ex is not None:
                return getattr(ex, k)
        return super().__getattr__(k)


class _Shape(tuple):
    """``x.shape`` while tracing: the batch size a Proxy, the other sizes ints."""

    def __new__(cls, proxy: _ShapeProxy, shape: torch.Size) -> _Shape:
        if len(shape) == 0:
            return super().__new__(cls, ())
        first = proxy.tracer.create_proxy("call_method", "size", (proxy, 0), {})
        return super().__new__(cls, (first, *(int(s) for s in shape[1:])))

    def numel(self) -> Any:
        out: Any = 1
        for s in self:
            out = out * s
        return out


def _examples(v: Any) -> Any:
    def one(a: Any) -> Any:
        if isinstance(a, fx.Proxy):
            ex = a.node.meta.get("example", _MISSING)
            if ex is _MISSING:
                raise _NoExample
            return ex
        return a

    return fx.node.map_aggregate(v, one)


class _NoExample(Exception):
    pass


_MISSING = object()


def opaque(module: nn.Module) -> bool:
    """Whether `module` is a block whose code cannot be traced by its nature: a TorchScript
    module, or a stand-in for one (an object with ``opaque_block = True``, `view.ScriptBlock`)."""
    stand_in = getattr(module, "opaque_block", False) is True
    return isinstance(module, torch.jit.ScriptModule) or stand_in


class Tracer(ThreadTracer):
    """The tracer of `inspect/`: sizes concrete from `example` (one value per placeholder;
    without one, sizes stay symbolic), modules made inside forward traced through (they are not
    submodules: no node can name them), opaque blocks (`opaque`) and the modules `leaf_names`
    or `leaf_types` name kept as leaves; `every_leaf`: every submodule a leaf (the receptive
    fields trace each module on its own). `failed`: the submodule whose tracing failed."""

    def __init__(
        self,
        leaf_names: Iterable[str] = (),
        leaf_types: tuple[type, ...] = (),
        example: tuple[Any, ...] | None = None,
        every_leaf: bool = False,
    ) -> None:
        super().__init__()
        self.leaf_names = set(leaf_names)
        self.leaf_types = leaf_types
        self.example = example
        self.every_leaf = every_leaf
        self.failed: tuple[str, type] | None = None
        self._concrete = threading.local()

    def installed(self, m: nn.Module) -> bool:
        """Whether `m` is a submodule of the root (else it was made inside a forward)."""
        try:
            self.path_of_module(m)
        except NameError:
            return False
        return True

    def _running_example(self) -> bool:
        return getattr(self._concrete, "on", False)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ShapeProxy(node, self)

    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        asked = name in self.leaf_names or isinstance(m, self.leaf_types)
        return self.every_leaf or asked or opaque(m) or super().is_leaf_module(m, name)

    def call_module(self, m: nn.Module, forward, args: tuple, kwargs: dict) -> Any:
        if self._foreign() or self._running_example() or not self.installed(m):
            return forward(*args, **kwargs)  # not installed: made inside forward, its ops recorded
        self._leaf_forward = forward
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed is None:
                self.failed = (self.path_of_module(m), type(m))
            raise

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if self._running_example():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_proxy(
        self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None
    ):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if self.example is not None and not self._foreign():
            # no example: shape queries on it stay symbolic
            with contextlib.suppress(Exception):
                proxy.node.meta["example"] = self._run_example(kind, target, args, kwargs)
        return proxy

    def _run_example(self, kind: str, target: Any, args: tuple, kwargs: dict) -> Any:
        if kind == "placeholder":
            i = sum(1 for n in self.graph.nodes if n.op == "placeholder") - 1
            return self.example[i] if i < len(self.example) else _MISSING
        a, kw = _examples(args), _examples(kwargs)
        self._concrete.on = True
        try:
            with torch.no_grad():
                if kind == "get_attr":
                    obj: Any = self.root
                    for part in str(target).split("."):
                        obj = getattr(obj, part)
                    return obj.detach() if isinstance(obj, torch.Tensor) else obj
                if kind == "call_function":
                    return target(*a, **kw)
                if kind == "call_method":
                    return getattr(a[0], target)(*a[1:], **kw)
                if kind == "call_module":
                    return self._leaf_forward(*a, **kw)
        finally:
            self._concrete.on = False
        return _MISSING


def trace(
    model: nn.Module,
    example: torch.Tensor | tuple[Any, ...] | None = None,
    leaf_modules: Iterable[str | type] = (),
    max_leaves: int = 64,
) -> Traced:
    """The functional fx graph of ``model`` (shapes concrete at ``example`` when given).

    A submodule that cannot be traced is retried as a leaf (its whole type at once), up to
    ``max_leaves`` times; the root itself failing raises the tracing error.
    """
    names = {m for m in leaf_modules if isinstance(m, str)}
    types = tuple(m for m in leaf_modules if isinstance(m, type))
    unknown = sorted(n for n in names if n not in dict(model.named_modules()))
    if unknown:
        valid = ", ".join(n for n, _ in list(model.named_modules())[1:30])
        raise ValueError(f"leaf_modules names no module {unknown}; modules are: {valid}, ...")
    if example is not None and not isinstance(example, tuple):
        example = (example,)
    auto: list[str] = []
    for _ in range(max_leaves + 1):
        tracer = Tracer(names, types, example)
        try:
            graph = tracer.trace(model)
            break
        except Exception:
            failed = tracer.failed
            if failed is None or failed[0] == "" or failed[1] in types:
                raise
            types = (*types, failed[1])
            auto.append(f"{failed[0]} ({failed[1].__name__})")
    else:  # pragma: no cover - max_leaves reached
        raise RuntimeError(f"could not trace {type(model).__name__} with {max_leaves} leaves")
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    leaves = sorted(called & set(names))
    blocks = {n: gm.get_submodule(n) for n in sorted(called - set(names))}
    scripts = [f"{n} ({type(b).__name__})" for n, b in blocks.items() if opaque(b)]
    traced = Traced(gm, tuple(example[0].shape) if example else None, auto + scripts + leaves)
    _functionalize(traced)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return traced


def mutated_input(node: fx.Node, root: nn.Module) -> fx.Node | None:
    """The tensor that `node` mutates in place (`x.add_(y)`, `F.relu(x, inplace=True)`,
    `nn.ReLU(inplace=True)`, `x += y`), else None. Reads the node only."""
    if node.op == "call_method":
        name = str(node.target)
        if not name.endswith("_") or name.endswith("__") or name in _NOT_INPLACE_METHODS:
            return None
        return node.args[0] if isinstance(node.args[0], fx.Node) else None
    if node.op == "call_function":
        flagged = node.kwargs.get("inplace") is True or _inplace_position(node) is not None
        return _first_tensor(node) if node.target in _INPLACE_FUNCTIONS or flagged else None
    if node.op == "call_module":
        mod = root.get_submodule(str(node.target))
        return _first_tensor(node) if getattr(mod, "inplace", False) is True else None
    return None


def _mutated_arg(node: fx.Node, gm: fx.GraphModule) -> fx.Node | None:
    """The tensor an in-place op mutates, after rewriting the op out of place; else None."""
    mutated = mutated_input(node, gm)
    if mutated is None:
        return None
    if node.op == "call_method":
        out_of_place = str(node.target)[:-1]
        if not hasattr(torch.Tensor, out_of_place):
            raise _Unfunctional(f"Tensor.{node.target}")
        node.target = out_of_place
    elif node.op == "call_function":
        if node.target in _INPLACE_FUNCTIONS:
            node.target = _INPLACE_FUNCTIONS[node.target]
        elif node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        else:
            i = _inplace_position(node)
            node.args = (*node.args[:i], False, *node.args[i + 1 :])
    else:
        twin = copy.copy(gm.get_submodule(str(node.target)))  # the user's module keeps its flag
        twin.inplace = False
        name = "_functional_" + str(node.target).replace(".", "_")
        gm.add_submodule(name, twin)
        node.meta["module_path"] = node.target
        node.target = name
    return mutated


def _first_tensor(node: fx.Node) -> fx.Node | None:
    if node.args and isinstance(node.args[0], fx.Node):
        return node.args[0]
    for k in ("input", "x", "self"):
        if isinstance(node.kwargs.get(k), fx.Node):
            return node.kwargs[k]
    return None


def _inplace_position(node: fx.Node) -> int | None:
    """Where a function call passes inplace=True by position, else None."""
    try:
        params = list(inspect.signature(node.target).parameters)
    except (TypeError, ValueError):
        return None
    if "inplace" in params:
        i = params.index("inplace")
        if i < len(node.args) and node.args[i] is True:
            return i
    return None


class _Unfunctional(Exception):
    pass


def _is_view(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _VIEW_METHODS
    if node.op == "call_function":
        return node.target in _VIEW_FUNCTIONS
    return False


def _alias_read_later(target: fx.Node, node: fx.Node, order: dict[fx.Node, int]) -> bool:
    """True when a tensor sharing memory with ``target`` is read after ``node`` mutates it."""
    later = order[node]
    seen: set[fx.Node] = set()
    stack = [target]
    while stack:  # the view chain up (bases) and down (views taken of any of them)
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if _is_view(t) and t.args and isinstance(t.args[0], fx.Node):
            stack.append(t.args[0])
        stack.extend(u for u in t.users if _is_view(u) and order[u] < later)
    seen.discard(target)
    return any(order[u] > later for a in seen for u in a.users if u not in seen)


def _functionalize(traced: Traced) -> None:
    """Rewrite in-place ops out of place; later reads of the mutated value read the result."""
    graph = traced.gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        try:
            target = _mutated_arg(node, traced.gm)
        except _Unfunctional as e:
            traced.unfaithful.append(f"{e} ({node.name})")
            continue
        if target is None:
            continue
        # a view of something else, or something viewed before: the mutation reaches an alias
        if _alias_read_later(target, node, order):
            traced.unfaithful.append(f"in-place {node.target} on a view ({node.name})")
            continue
        for user in list(target.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(target, node)
