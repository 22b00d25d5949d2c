"""`IncrementalEngine`: one model traced at one base image; `plan` positions, `run` batches."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..tracing import Traced
from ..tracing import trace as trace_graph
from .fold import Folds, find_folds
from .plan import DEFAULT_FULL_THRESHOLD, IncrementalPlan, make_plan
from .run import Executor, call


class UnsupportedOpWarning(UserWarning):
    """An op the incremental engine does not know; it computes in full from there (exact)."""


class UnfaithfulGraphError(RuntimeError):
    """The traced graph cannot compute what the model computes (the caller goes full)."""


def trace(model: nn.Module, example: Any = None, leaf_modules: Any = ()) -> Traced:
    """The graph the engine runs (see :mod:`..tracing`); traced at ``example``'s shape if given.

    The engine retraces at the image's shape when given a graph traced at another one.
    """
    return trace_graph(model, example, leaf_modules)


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
        #: the nodes an occluding patch can change: the image and all that reads it
        self.affected: set[fx.Node] = set()
        for n in self.nodes:
            if n is self.input_node or any(a in self.affected for a in n.all_input_nodes):
                self.affected.add(n)
        self.base: dict[fx.Node, Any] = {}
        with torch.inference_mode():
            self._run_base(image)
            folds = find_folds(self.nodes, self.modules, self.base) if fuse else Folds()
        self._executor = Executor(self, folds)

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
                env[node] = call(node, self.modules, args, kwargs)

    @property
    def base_output(self) -> Any:
        return self.base[self.output_node]

    def plan(self, patch: tuple[int, int], ys: torch.Tensor, xs: torch.Tensor) -> IncrementalPlan:
        """Geometry for patches of size ``patch`` with top-left corners (ys[k], xs[k])."""
        dev = self.image.device
        plan = make_plan(self, patch, ys.to(dev, torch.long), xs.to(dev, torch.long))
        plan.steps = self._executor.compile(plan)
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

    def run(
        self, plan: IncrementalPlan, start: int, stop: int, update: torch.Tensor
    ) -> torch.Tensor:
        """Model output for the positions ``start:stop`` of ``plan``.

        ``update``: (B, C, ph, pw), the new image inside each position's rectangle (the
        patch at ``plan.ys, plan.xs``).
        """
        return self._executor.run(plan, start, stop, update)


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
