"""Occlusion maps: slide a patch over the image and record the target's score.

>>> res = occlusion_map(model, image, patch_size=16, stride=8)   # doctest: +SKIP
>>> res.scores.shape, res.base_score                               # doctest: +SKIP

``scores[i, j]`` is the model's output for ``target`` (softmax probability, or the logit with
``output="logit"``) when a patch of the image is replaced by ``baseline``. Where the patches go
(``placement``), per axis, with ``s`` the stride and ``p`` the patch size:

* ``"centered"`` (default; the lecture's definition, after Zeiler & Fergus): patch ``i`` is
  centred on pixel ``c = i*s`` and covers ``[c - p//2, c - p//2 + p)`` clipped to the image, for
  every ``c < H``: ``n_y = ceil(H / s)``, and at stride 1 the map has the image's size.
* ``"inside"``: patch ``i`` covers ``[i*s, i*s + p)``, from the top-left corner on, for
  ``n_y = ceil((H - p) / s) + 1``; when ``(H - p) % s != 0`` the last patch runs past the
  border and is clipped there, as Captum's ``Occlusion`` does.

``result.starts`` holds the unclipped first row/column of each patch; pixels of the patch
outside the image are simply not there. ``baseline`` pixel ``(u, v)`` goes to patch pixel
``(u, v)`` of the unclipped patch.

Two methods give the same map (to float rounding, <= 1e-4 in probability):

* ``"full"``: the reference, a plain batched recompute of the whole model for each position.
* ``"incremental"`` (default): :class:`~cnnviz_widgets.inspect.incremental.IncrementalEngine`
  recomputes per layer only the rectangle the patch changes (Krypton, SIGMOD 2019), then finishes
  the network in full once the rectangles cover most of the map.

Relation to Captum's ``Occlusion`` (``captum.attr.Occlusion(f).attribute(x, target=t,
sliding_window_shapes=(C, ph, pw), strides=(C, sh, sw), baselines=b)`` where ``f`` returns the
same score we record): Captum returns a per-pixel attribution

    attr[c, y, x] = mean over the windows (i, j) that cover pixel (y, x) of
                    (base_score - scores[i, j])

(pixels no window covers get 0). So with ``stride == patch`` every pixel of the patch at (i, j)
gets exactly ``base_score - scores[i, j]``; for overlapping windows it is the average over the
covering windows. :func:`captum_equivalent` computes that attribution from a result with
``placement="inside"`` (Captum's windows; tests check it against Captum itself for strides that
do and do not divide ``H - p``).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .incremental import (
    DEFAULT_FULL_THRESHOLD,
    IncrementalEngine,
    UnfaithfulGraphError,
    plan_macs,
)
from .inputs import model_device, model_image
from .view import eval_view, forward_error
from .wrappers import unwrap

__all__ = [
    "OcclusionResult",
    "captum_equivalent",
    "map_shape",
    "occlusion_map",
    "occlusion_maps",
]

_OUTPUTS = ("prob", "logit")
_METHODS = ("incremental", "full")
_PLACEMENTS = ("centered", "inside")
#: Below this FLOP bound (full / incremental multiply-adds) the plain batched recompute runs
#: instead: the gathers and the many small ops cost more than the few FLOPs saved. Measured
#: with ``python benchmarks/occlusion.py`` (see benchmarks/RESULTS.md).
MIN_FLOP_BOUND = 1.1
#: images per forward of the full path on CPU (measured: see `_Runner._batch`)
FULL_CPU_BATCH = 8
#: precision -> autocast dtype. "fp32" is exact (on CUDA, TF32 is switched off for the call);
#: "tf32" lets cuDNN/cuBLAS use TF32 tensor cores; "bf16"/"fp16" autocast.
_PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _TF32:
    """Set CUDA TF32 use for the duration of a computation (restored afterwards)."""

    def __init__(self, device: torch.device, precision: str) -> None:
        self.active = device.type == "cuda"
        self.want = precision != "fp32"

    def __enter__(self) -> None:
        if self.active:
            self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = self.want
            torch.backends.cuda.matmul.allow_tf32 = self.want

    def __exit__(self, *exc: object) -> None:
        if self.active:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


@dataclass
class OcclusionResult:
    """One occlusion map and how it was computed."""

    scores: np.ndarray  #: float32 (n_y, n_x): target score with the patch at each position
    base_score: float  #: the target's score on the unoccluded image
    target: int  #: class index
    patch_size: tuple[int, int]  #: (h, w)
    stride: tuple[int, int]  #: (h, w)
    method: str  #: "incremental" or "full"
    output: str = "prob"  #: "prob" (softmax) or "logit"
    elapsed_s: float = 0.0  #: wall time of this map (excluding the shared base pass)
    batch_size: int = 0  #: positions per batch actually used (after any OOM halving)
    device: str = "cpu"
    precision: str = "fp32"
    #: max |score - fp32 score| over a sample of positions when precision is not fp32
    precision_error: float | None = None
    image_size: tuple[int, int] = (0, 0)
    #: "centered" (a patch centred on every stride-th pixel) or "inside" (patches from the
    #: top-left corner on, the last one clipped at the border)
    placement: str = "centered"
    #: unclipped first row / column of the patch at each map row / column; the patch covers
    #: ``[start, start + patch)`` clipped to the image
    starts: tuple[np.ndarray, np.ndarray] = (np.zeros(0, int), np.zeros(0, int))
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def positions(self) -> int:
        return int(self.scores.size)

    @property
    def drop(self) -> np.ndarray:
        """``base_score - scores``: how much occluding each position lowers the score."""
        return np.float32(self.base_score) - self.scores


def _pair(v: Any, name: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)) and len(v) == 2:
        vals = v
    elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        vals = (v, v)
    else:
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints, got {v!r}")
    out = []
    for x in vals:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise ValueError(f"{name} must be an int or a pair (h, w) of ints, got {v!r}")
        out.append(int(x))
    return out[0], out[1]


def _score(logits: torch.Tensor, target: int, output: str) -> torch.Tensor:
    logits = logits.float()
    if output == "prob":
        return torch.softmax(logits, dim=1)[:, target]
    return logits[:, target]


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Outputs equal up to float rounding (batched kernels, folded BatchNorm)."""
    a, b = a.double(), b.double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return bool(torch.equal(a.nan_to_num(), b.nan_to_num()))
    return float((a - b).abs().max()) <= 1e-4 * (1.0 + float(b.abs().max()))


def _memory_budget(device: torch.device) -> int:
    """Bytes a batch of occluded positions may take: half the free GPU memory, or a quarter
    of the available RAM (at most 8 GiB) on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    avail = 4 << 30
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return int(min(avail // 4, 8 << 30))


class _Placement:
    """Where the patches go: per position the unclipped patch origin (ty, tx), the fixed-size
    rectangle (oy, ox) holding it (shifted inside the image), and the pixels it changes."""

    def __init__(self, image: torch.Tensor, patch: tuple[int, int], stride: tuple[int, int],
                 placement: str, value: torch.Tensor) -> None:  # fmt: skip
        _, _, h, w = image.shape
        dev = image.device
        starts = [
            _starts(n, p, s, placement) for n, p, s in zip((h, w), patch, stride, strict=True)
        ]
        self.ny, self.nx = len(starts[0]), len(starts[1])
        gy, gx = torch.meshgrid(
            torch.tensor(starts[0], device=dev), torch.tensor(starts[1], device=dev), indexing="ij"
        )
        self.ty, self.tx = gy.reshape(-1), gx.reshape(-1)
        self.oy = self.ty.clamp(0, h - patch[0])
        self.ox = self.tx.clamp(0, w - patch[1])
        self.starts = starts
        self.image, self.patch, self.value = image, patch, value

    @property
    def n(self) -> int:
        return int(self.ty.numel())

    def only(self, keep: torch.Tensor) -> _Placement:
        """The same grid with only the positions where `keep` (a bool per position) is set."""
        part = copy.copy(self)
        part.ty, part.tx, part.oy, part.ox = (
            self.ty[keep],
            self.tx[keep],
            self.oy[keep],
            self.ox[keep],
        )
        return part

    def updates(self, start: int, stop: int) -> torch.Tensor:
        """(B, C, ph, pw): the image inside each rectangle with its patch pasted."""
        ph, pw = self.patch
        dev = self.image.device
        ty, tx = self.ty[start:stop, None], self.tx[start:stop, None]
        ry = self.oy[start:stop, None] + torch.arange(ph, device=dev)
        rx = self.ox[start:stop, None] + torch.arange(pw, device=dev)
        crop = self.image[0][:, ry[:, :, None], rx[:, None, :]]
        u, v = (ry - ty).clamp(0, ph - 1), (rx - tx).clamp(0, pw - 1)
        patch = self.value[:, u[:, :, None], v[:, None, :]]
        inside = ((ry >= ty) & (ry < ty + ph))[:, :, None] & ((rx >= tx) & (rx < tx + pw))[:, None]
        return torch.where(inside[None], patch, crop).permute(1, 0, 2, 3)

    def images(self, start: int, stop: int) -> torch.Tensor:
        """(B, C, H, W): the occluded images themselves."""
        upd = self.updates(start, stop)
        x = self.image.expand(stop - start, *self.image.shape[1:]).clone()
        ph, pw = self.patch
        for k, (y0, x0) in enumerate(
            zip(self.oy[start:stop].tolist(), self.ox[start:stop].tolist(), strict=True)
        ):
            x[k, :, y0 : y0 + ph, x0 : x0 + pw] = upd[k]
        return x


def map_shape(image_size: Any, patch_size: Any, stride: Any, placement: str = "centered"):
    """(n_y, n_x) of the map of an image of ``image_size`` (H, W)."""
    size = _pair(tuple(image_size), "image_size")
    patch, step = _pair(patch_size, "patch_size"), _pair(stride, "stride")
    return tuple(
        len(_starts(n, p, s, placement)) for n, p, s in zip(size, patch, step, strict=True)
    )


def _starts(n: int, patch: int, stride: int, placement: str) -> list[int]:
    """Unclipped first rows of the patches along one axis of length ``n``."""
    if placement == "centered":
        return [c - patch // 2 for c in range(0, n, stride)]
    count = -(-(n - patch) // stride) + 1  # the last window clipped at the border, as Captum
    return [i * stride for i in range(count)]


def _check_options(output, method, precision, placement, batch_size, forward_args) -> None:
    """Raise a ValueError naming the first option out of its range."""
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(_PRECISIONS)}, got {precision!r}")
    if placement not in _PLACEMENTS:
        raise ValueError(f"placement must be one of {_PLACEMENTS}, got {placement!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if not isinstance(forward_args, (tuple, list)):
        raise ValueError(
            f"forward_args must be a tuple of the model's inputs after the image, got "
            f"{type(forward_args).__name__}; wrap a single one: forward_args=(value,)"
        )


class _Runner:
    """Shared state between the maps of one (model, image, target, baseline) request."""

    def __init__(
        self,
        model: nn.Module,
        image: Any,
        target: Any,
        patch_size: Any,
        baseline: Any,
        output: str,
        method: str,
        batch_size: int | None,
        device: Any,
        precision: str,
        full_threshold: float | None,
        traced: Any = None,
        placement: str = "centered",
        forward_args: Sequence[Any] = (),
        leaf_modules: Sequence[Any] = (),
    ) -> None:
        _check_options(output, method, precision, placement, batch_size, forward_args)
        image = model_image(model, image)
        self.device = torch.device(device) if device is not None else model_device(model)
        #: what runs: an eval-mode view of the user's model on `device` (the model is untouched)
        self.model = eval_view(model, self.device)
        pdtype = next((t.dtype for t in model.parameters() if t.is_floating_point()), None)
        self.image = image.detach().to(self.device, pdtype or torch.float32)
        _, c, h, w = self.image.shape
        ph, pw = _pair(patch_size, "patch_size")
        if not (1 <= ph <= h and 1 <= pw <= w):
            raise ValueError(
                f"patch_size {(ph, pw)} must be at least 1 and at most the image size "
                f"(H, W) = {(h, w)}"
            )
        self.patch = (ph, pw)
        try:
            bl = torch.as_tensor(baseline, dtype=self.image.dtype, device=self.device)
            self.patch_value = torch.broadcast_to(bl, (c, ph, pw)).contiguous()
        except (RuntimeError, TypeError, ValueError) as e:
            raise ValueError(
                f"baseline must be a float or a tensor broadcastable to (C, ph, pw) = "
                f"{(c, ph, pw)}, got {getattr(baseline, 'shape', baseline)!r}"
            ) from e
        if not torch.isfinite(self.patch_value).all():
            got = baseline if isinstance(baseline, float) else "NaN/inf values"
            raise ValueError(
                f"baseline must be finite (a gray patch: 0.0 is the dataset's mean after "
                f"normalisation); got {got}"
            )
        self.output = output
        self.method = method
        self.placement = placement
        self.batch_size = batch_size
        self.precision = precision
        self.full_threshold = DEFAULT_FULL_THRESHOLD if full_threshold is None else full_threshold
        self.engine: IncrementalEngine | None = None
        self.target_arg = target
        self.traced = traced
        self.forward_args = tuple(
            a.to(self.device) if isinstance(a, torch.Tensor) else a for a in forward_args
        )
        self.leaf_modules = tuple(leaf_modules)
        #: the model's output for one image depends on the rest of its batch
        self.per_image = False
        self.notes: list[str] = []
        self.given_base: torch.Tensor | None = None  #: the caller's forward of the image
        self._said_nonfinite = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model itself on a batch (fixed inputs expanded to it, as Captum does)."""
        b = x.shape[0]
        extra = tuple(
            a.expand(b, *a.shape[1:])
            if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == 1
            else a
            for a in self.forward_args
        )
        if self.per_image and b > 1:
            return torch.cat([self.forward(x[i : i + 1]) for i in range(b)])
        return self.model(x, *extra)

    def _warn(self, message: str) -> None:
        self.notes.append(message)
        warnings.warn(message, stacklevel=5)

    def start(self) -> None:
        """Base pass (inside the model-state context): base output, target, engine, checks."""
        self._done: dict[tuple[int, int], float] = {}  # position -> score, over this run's maps
        self._method_used = "full"
        with torch.inference_mode():
            given = self.given_base
            base = self._base_forward() if given is None else given.to(self.device)
            if not isinstance(base, torch.Tensor) or base.dim() != 2 or base.shape[0] != 1:
                shape = tuple(base.shape) if isinstance(base, torch.Tensor) else type(base).__name__
                raise ValueError(
                    f"the model must return class scores of shape (1, num_classes) for one "
                    f"image, got {shape}"
                )
            if not torch.isfinite(base).all():
                bad = int((~torch.isfinite(base)).sum())
                raise ValueError(
                    f"the model's output on the unoccluded image is not finite ({bad} of "
                    f"{base.numel()} class scores are NaN or inf), so no occlusion map can mean "
                    "anything; check its weights (any(p.isnan().any() for p in "
                    "model.parameters())) and the image"
                )
            self._check_batch(base)
            if self.method == "incremental" and not self.per_image:
                try:
                    self.engine = IncrementalEngine(
                        self.model,
                        self.image,
                        full_threshold=self.full_threshold,
                        traced=self.traced,
                        forward_args=self.forward_args,
                        leaf_modules=self.leaf_modules,
                    )
                    self._check_engine(base)
                except Exception as e:  # fx cannot trace every model: stay exact, go slow
                    self.engine = None
                    self._warn(
                        f"incremental occlusion cannot compute this model exactly "
                        f"({type(e).__name__}: {e}); using method='full' (exact, slower)"
                    )
        k = base.shape[1]
        target = self.target_arg
        if target is None:
            target = int(base.argmax(dim=1).item())
        else:
            if isinstance(target, torch.Tensor):
                if target.numel() != 1:
                    raise ValueError(f"target must be one class index, got shape {target.shape}")
                target = target.item()
            if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
                raise ValueError(f"target must be an int class index, got {target!r}")
            target = int(target)
            if not 0 <= target < k:
                raise ValueError(f"target {target} out of range [0, {k}) (num_classes = {k})")
        self.target = target
        self.num_classes = k
        self.base_score = float(_score(base, target, self.output).item())

    def _base_forward(self) -> Any:
        """The model on the image (a clone: the model may write to it); an image too small
        for the model is an error naming its size, the size needed and the layer that failed."""
        try:
            return self.forward(self.image.clone())
        except Exception as err:
            if self.forward_args:
                raise
            found = forward_error(self.model, self.image, err, type(self.model).__name__)
            if found is err:
                raise
            raise found from err

    def _probe(self) -> _Placement:
        """Two occluded positions (corner, centre) to check the model and the engine on."""
        _, _, h, w = self.image.shape
        pl = _Placement(self.image, self.patch, (max(1, h // 2), max(1, w // 2)), "centered",
                        self.patch_value)  # fmt: skip
        keep = torch.zeros(pl.n, dtype=torch.bool, device=pl.ty.device)
        keep[[0, pl.n - 1]] = True
        return pl.only(keep)

    def _check_batch(self, base: torch.Tensor) -> None:
        """Detect a model whose output for an image depends on the rest of its batch. The
        same forward gives the probe positions' own outputs (`_probe_out`), which the engine
        is then checked against."""
        probe = self._probe()
        x = torch.cat([self.image, probe.images(0, probe.n)])
        out = self.forward(x)
        self._probe_out = out[1:]
        if _close(out[:1], base):
            return
        if self._coupled(x, out):
            self.per_image = True
            self._warn(
                "the model's output for one image depends on the other images of its batch "
                "(e.g. BatchNorm without running statistics, or per-batch normalisation); "
                "computing one occluded image per forward (exact, slower)"
            )
            return
        diff = float((out[:1].double() - base.double()).abs().max())
        self._warn(
            f"the model's logits for an image differ by up to {diff:.3g} between a batch of 1 "
            f"and a batch of {len(x)} (its float32 kernels differ with the batch size; they do "
            "not depend on the other images): the map, computed in batches, carries "
            "differences of that size"
        )

    def _coupled(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """Whether the image's output in the batch ``x`` differs from batch 1 because of the
        other images, not the kernels: a batch of the same size with other companions (the image
        itself) runs the same kernels, so without coupling its first row is the same up to a
        rounding far below the batch-size noise `_close` allows (deep nets differ by ~1e-4
        between batch sizes; the same size agrees to ~1e-7)."""
        again = self.forward(self.image.expand_as(x).clone())[:1]
        a, b = again.double(), out[:1].double()
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            return not torch.equal(a.nan_to_num(), b.nan_to_num())
        return float((a - b).abs().max()) > 1e-6 * (1.0 + float(b.abs().max()))

    def _check_engine(self, base: torch.Tensor) -> None:
        """The traced graph must give the model's own outputs (base and two occlusions)."""
        engine = self.engine
        assert engine is not None
        if not _close(engine.base_output, base):
            raise UnfaithfulGraphError(
                "the traced graph's output differs from the model's on the image "
                f"(max abs diff {float((engine.base_output - base).abs().max()):.3g})"
            )
        probe = self._probe()
        plan = engine.plan(self.patch, probe.oy, probe.ox)
        got = engine.run(plan, 0, probe.n, probe.updates(0, probe.n))
        ref = self._probe_out  # the model's own, in one batch with the image (no coupling)
        if not _close(got, ref):
            raise UnfaithfulGraphError(
                "the incremental result differs from the model's on a probe position "
                f"(max abs diff {float((got - ref).abs().max()):.3g})"
            )

    def _batch(self, placement: _Placement, plan: Any) -> int:
        if self.batch_size:
            return self.batch_size
        # CUDA: as many as memory allows. 2 CPU cores, ResNet-18 224x224 stride 8: batch
        # 128-256 beat 32-64 for the engine (fewer, larger ops; the many small rectangle ops
        # suffer most from thread contention). The plain forward of the full path is fastest
        # per image at batch 8 (benchmarks/RESULTS.md: 1.1x ResNet-18 to 1.9x RegNetY-400MF
        # faster than Captum's usual 32, whose activations outgrow the CPU's caches).
        # The engine's best CPU batch follows the bytes a position's rectangles hold: ResNet-18
        # (6.8 MB a position at stride 16) is fastest at 128, EfficientNet-Lite0's expanded
        # blocks (40 MB) at 16, 1.5x faster there than at 128 (`_cpu_batch`).
        if self.device.type == "cuda":
            bs = 4096
        else:
            bs = FULL_CPU_BATCH if plan is None else _cpu_batch(self.engine, plan)
        engine = self.engine
        if engine is not None and plan is not None:
            full = set(plan.full_nodes)
            per_pos = sum(
                v.numel() * v.element_size()
                for n, v in engine.base.items()
                if isinstance(v, torch.Tensor) and n.name in full
            )
            per_pos += self.image.numel() * self.image.element_size()
        else:  # activations of a CNN: a few dozen times its input
            per_pos = self.image.numel() * self.image.element_size() * 64
        return int(max(1, min(bs, _memory_budget(self.device) // max(1, 3 * per_pos))))

    def _choose(self, placement: _Placement) -> tuple[Any, float | None]:
        """The incremental plan (None where the full recompute is expected to be faster) and
        the FLOP bound on its speedup."""
        engine = self.engine
        if engine is None:
            return None, None
        plan = engine.plan(self.patch, placement.oy, placement.ox)
        inc, full = plan_macs(engine, plan)
        bound = full / inc if inc > 0 else float("inf")
        return (plan if bound >= MIN_FLOP_BOUND else None), bound

    def _scores(self, placement: _Placement) -> torch.Tensor:
        """The score of each position of `placement`, in batches (`_last`: the plan, its FLOP
        bound and the batch size used)."""
        n = placement.n
        plan, bound = self._choose(placement) if n else (None, None)
        bs = self._batch(placement, plan)
        scores = torch.empty(n, dtype=torch.float32, device=self.device)
        dtype = _PRECISIONS[self.precision]
        start = 0
        with torch.inference_mode(), _TF32(self.device, self.precision):
            while start < n:
                stop = min(n, start + bs)
                try:
                    with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                        if plan is not None:
                            out = self.engine.run(plan, start, stop, placement.updates(start, stop))
                        else:
                            out = self.forward(placement.images(start, stop))
                except Exception as e:
                    if _is_oom(e) and bs > 1:
                        bs = max(1, bs // 2)
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    raise
                scores[start:stop] = _score(out, self.target, self.output)
                start = stop
        self._last = (plan, bound, bs)
        if n:
            self._method_used = "incremental" if plan is not None else "full"
        return scores

    def compute(self, stride: Any) -> OcclusionResult:
        sh, sw = _pair(stride, "stride")
        if sh <= 0 or sw <= 0:
            raise ValueError(f"stride {(sh, sw)} must be >= 1 in both dimensions")
        t0 = time.perf_counter()
        placement = _Placement(self.image, self.patch, (sh, sw), self.placement, self.patch_value)
        # a position a coarser map of this run computed is not computed again
        keys = list(zip(placement.ty.tolist(), placement.tx.tolist(), strict=True))
        new = [k not in self._done for k in keys]
        todo = placement.only(torch.tensor(new, device=placement.ty.device))
        computed = self._scores(todo)
        fresh = [k for k, is_new in zip(keys, new, strict=True) if is_new]
        self._done.update(zip(fresh, computed.tolist(), strict=True))
        scores = torch.tensor([self._done[k] for k in keys], dtype=torch.float32)
        plan, bound, bs = self._last
        err = None
        if self.precision != "fp32" and todo.n:
            with torch.inference_mode(), _TF32(self.device, "fp32"):
                err = self._precision_error(computed, todo)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        bad = int((~torch.isfinite(scores)).sum())
        if bad and not self._said_nonfinite:
            self._said_nonfinite = True
            self._warn(
                f"the model's output is NaN or inf at {bad} of {scores.numel()} occluded "
                "positions (they show as gaps): the patch drives it out of range there"
            )
        extra: dict[str, Any] = {
            "full_nodes": plan.full_nodes if plan is not None else [],
            "rect_nodes": list(plan.rect_fracs) if plan is not None else [],
            "notes": list(self.notes),
            "flop_bound": bound,
            "computed": todo.n,  # the rest were computed by a coarser map of this run
        }
        return OcclusionResult(
            scores=scores.reshape(placement.ny, placement.nx).cpu().numpy().astype(np.float32),
            base_score=self.base_score,
            target=self.target,
            patch_size=self.patch,
            stride=(sh, sw),
            method=self._method_used,
            output=self.output,
            elapsed_s=time.perf_counter() - t0,
            batch_size=bs,
            device=str(self.device),
            precision=self.precision,
            precision_error=err,
            image_size=(int(self.image.shape[2]), int(self.image.shape[3])),
            placement=self.placement,
            starts=(np.asarray(placement.starts[0]), np.asarray(placement.starts[1])),
            extra=extra,
        )

    def _precision_error(self, scores: torch.Tensor, placement: _Placement) -> float:
        """Max |reduced - fp32| over up to 64 evenly spread positions (fp32 by full recompute)."""
        n = placement.n
        idx = torch.linspace(0, n - 1, min(n, 64)).round().long().unique().tolist()
        ref = torch.cat([
            _score(self.forward(placement.images(i, i + 1)), self.target, self.output)
            for i in idx
        ])  # fmt: skip
        return float((scores[idx] - ref).abs().max().item())


#: bytes of rectangle activations a CPU batch of the engine aims at (measured on 2 cores:
#: ResNet-18 best at 128 positions, EfficientNet-Lite0 at 16; see `_Runner._batch`)
CPU_BATCH_BYTES = 800e6


def _cpu_batch(engine: Any, plan: Any) -> int:
    """The engine's CPU batch: `CPU_BATCH_BYTES` over the bytes of one position's changed
    activations (rectangles, and whole maps where the plan computes in full), rounded to a
    power of two in 8..256."""
    per_pos = 0.0
    for node in engine.affected:
        out = engine.base.get(node)
        if isinstance(out, torch.Tensor):
            g = plan.geos.get(node)
            frac = g.frac if g is not None and node.name not in plan.full_nodes else 1.0
            per_pos += out[0].numel() * out.element_size() * frac
    return int(2 ** min(8, max(3, round(math.log2(CPU_BATCH_BYTES / max(per_pos, 1.0))))))


def _runner(model: nn.Module, image: Any, **kw: Any) -> _Runner:
    return _Runner(model, image, **kw)


def occlusion_maps(
    model: nn.Module,
    image: torch.Tensor,
    strides: Sequence[Any] = (16, 8, 4),
    *,
    target: int | None = None,
    patch_size: int | tuple[int, int] = 16,
    baseline: float | torch.Tensor = 0.0,
    output: str = "prob",
    method: str = "incremental",
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    full_threshold: float | None = None,
    traced: Any = None,
    placement: str = "centered",
    forward_args: Sequence[Any] = (),
    leaf_modules: Sequence[Any] = (),
    base_output: torch.Tensor | None = None,
) -> Iterator[OcclusionResult]:
    """Yield one finished :class:`OcclusionResult` per stride, coarse first.

    The base pass (the unoccluded activations, the target) is done once and shared by all
    strides. What runs is an eval-mode view of the model on ``device``, made once per call; the
    model itself (its flags, device, hooks) is never touched.
    Arguments as :func:`occlusion_map`; strides are validated before anything runs.
    ``traced``: the model's graph from :func:`~cnnviz_widgets.inspect.incremental.trace` at this
    image's shape, made before and reused, so that repeated maps of one model skip the trace.
    ``base_output``: the model's (1, num_classes) output on ``image``, already computed by the
    caller on the model's eval-mode view (a widget's predicted class): the base pass reuses it
    instead of running the image again.
    """
    model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
    strides = list(strides)
    for s in strides:
        sh, sw = _pair(s, "stride")
        if sh <= 0 or sw <= 0:
            raise ValueError(f"stride {(sh, sw)} must be >= 1 in both dimensions")
    runner = _Runner(
        model,
        image,
        target=target,
        patch_size=patch_size,
        baseline=baseline,
        output=output,
        method=method,
        batch_size=batch_size,
        device=device,
        precision=precision,
        full_threshold=full_threshold,
        traced=traced,
        placement=placement,
        forward_args=forward_args,
        leaf_modules=leaf_modules,
    )
    runner.given_base = base_output
    return _iterate(runner, strides)


def _iterate(runner: _Runner, strides: list[Any]) -> Iterator[OcclusionResult]:
    first = True
    for s in strides:
        with torch.inference_mode(), _TF32(runner.device, runner.precision):
            if first:
                t0 = time.perf_counter()
                runner.start()
                base_s = time.perf_counter() - t0
            res = runner.compute(s)
            if first:
                res.extra["base_s"] = base_s
                first = False
        yield res


def occlusion_map(
    model: nn.Module,
    image: torch.Tensor,
    target: int | None = None,
    patch_size: int | tuple[int, int] = 16,
    stride: int | tuple[int, int] = 8,
    baseline: float | torch.Tensor = 0.0,
    output: str = "prob",
    method: str = "incremental",
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    full_threshold: float | None = None,
    placement: str = "centered",
    forward_args: Sequence[Any] = (),
    leaf_modules: Sequence[Any] = (),
) -> OcclusionResult:
    """Occlusion map of ``model`` on ``image`` (see the module docstring for the definition).

    Args:
        model: a classifier returning (1, num_classes) scores for one (1, C, H, W) image.
        image: float tensor (C, H, W) or (1, C, H, W) in the model's input space.
        target: class index; None means the predicted class.
        patch_size, stride: int or (h, w).
        placement: "centered" (a patch centred on every stride-th pixel, clipped at the
            border) or "inside" (Captum's windows); see the module docstring.
        forward_args: the model's further inputs after the image, held fixed (Captum's
            ``additional_forward_args``); tensors with a batch dimension of 1 are expanded
            to each batch of positions.
        leaf_modules: module names or types kept opaque when tracing (as in
            ``torchvision.models.feature_extraction``); the engine computes in full from
            there. Untraceable modules are found and kept opaque by themselves.
        baseline: float or tensor broadcastable to (C, patch_h, patch_w) pasted over the patch.
        output: "prob" (softmax probability of ``target``) or "logit".
        method: "incremental" (exact, recomputes only changed rectangles) or "full".
        batch_size: positions per batch; None picks one (CPU: fixed; CUDA: from free memory,
            halved on out-of-memory).
        device: where to compute; None means the model's device. An eval-mode view of the model
            runs there (its weights copied once per call); the model itself stays as it is.
        precision: "fp32" (exact, default; on CUDA TF32 is off during the call), "tf32"
            (CUDA TF32 tensor cores), or "bf16"/"fp16" autocast (meant for CUDA); for all but
            "fp32" the result's ``precision_error`` is the max error vs fp32 on up to 64
            evenly spread positions.
        full_threshold: area fraction above which a layer is computed in full
            (default :data:`~cnnviz_widgets.inspect.incremental.DEFAULT_FULL_THRESHOLD`).

    Raises:
        ValueError: bad image shape, patch larger than the image, stride < 1, target out of
            range, unknown ``output``/``method``, or a model that does not return
            (1, num_classes).
    """
    gen = occlusion_maps(
        model,
        image,
        strides=[stride],
        target=target,
        patch_size=patch_size,
        baseline=baseline,
        output=output,
        method=method,
        batch_size=batch_size,
        device=device,
        precision=precision,
        full_threshold=full_threshold,
        placement=placement,
        forward_args=forward_args,
        leaf_modules=leaf_modules,
    )
    try:
        return next(gen)
    finally:
        gen.close()


def captum_equivalent(result: OcclusionResult, channels: int = 1) -> np.ndarray:
    """Captum ``Occlusion``'s per-pixel attribution (channels, H, W) implied by ``result``.

    ``attr[:, y, x]`` = mean over windows covering (y, x) of ``base_score - scores[i, j]``;
    0 where no window covers the pixel. Exact only when ``result`` was computed with
    ``placement="inside"`` and the score function Captum was given.
    """
    h, w = result.image_size
    ph, pw = result.patch_size
    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    drop = result.base_score - result.scores.astype(np.float64)
    for i, y0 in enumerate(result.starts[0].tolist()):
        for j, x0 in enumerate(result.starts[1].tolist()):
            ys = slice(max(y0, 0), max(0, min(y0 + ph, h)))
            xs = slice(max(x0, 0), max(0, min(x0 + pw, w)))
            total[ys, xs] += drop[i, j]
            count[ys, xs] += 1
    attr = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.broadcast_to(attr, (channels, h, w)).astype(np.float32)
