"""Occlusion maps: slide a patch over the image and record the target's score.

>>> res = occlusion_map(model, image, patch_size=16, stride=8)   # doctest: +SKIP
>>> res.scores.shape, res.base_score                               # doctest: +SKIP

``scores[i, j]`` is the model's output for ``target`` (softmax probability, or the logit with
``output="logit"``) when the patch covering rows ``i*stride_h .. i*stride_h + patch_h - 1`` and
columns ``j*stride_w .. j*stride_w + patch_w - 1`` is replaced by ``baseline``; patches lie fully
inside the image, so ``n_y = (H - patch_h) // stride_h + 1`` (likewise ``n_x``).

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
covering windows. :func:`captum_equivalent` computes that attribution from one of our results
(tests check it against Captum itself).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._locks import FX_LOCK
from .capture import inference_state
from .incremental import DEFAULT_FULL_THRESHOLD, IncrementalEngine
from .inputs import model_device, one_image

__all__ = [
    "OcclusionResult",
    "captum_equivalent",
    "occlusion_map",
    "occlusion_maps",
]

_OUTPUTS = ("prob", "logit")
_METHODS = ("incremental", "full")
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


def _check_image(image: Any) -> torch.Tensor:
    """One image as a (1, C, H, W) float tensor (PIL images and arrays as `to_batch` takes them)."""
    return one_image(image)


def _score(logits: torch.Tensor, target: int, output: str) -> torch.Tensor:
    logits = logits.float()
    if output == "prob":
        return torch.softmax(logits, dim=1)[:, target]
    return logits[:, target]


def _default_batch(device: torch.device, image: torch.Tensor, engine: Any, full: bool) -> int:
    if device.type != "cuda":
        # 2 shared CPU cores, ResNet-18 224x224 stride 8: batch 128-256 beat 32-64 (fewer,
        # larger ops; the many small rectangle ops suffer most from thread contention). The
        # full reference uses Captum's usual 32.
        return 32 if full else 128
    free, _ = torch.cuda.mem_get_info(device)
    per_pos = 0
    if engine is not None:
        for v in engine.base.values():
            if isinstance(v, torch.Tensor):
                per_pos += v.numel() * v.element_size()
    else:
        per_pos = image.numel() * image.element_size() * 64
    per_pos = max(per_pos, 1) * 3
    return int(max(1, min(4096, (free * 0.5) // per_pos)))


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc)


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
    ) -> None:
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(_PRECISIONS)}, got {precision!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        image = _check_image(image)
        self.device = torch.device(device) if device is not None else model_device(model)
        self.model = model
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
        self.output = output
        self.method = method
        self.batch_size = batch_size
        self.precision = precision
        self.full_threshold = DEFAULT_FULL_THRESHOLD if full_threshold is None else full_threshold
        self.engine: IncrementalEngine | None = None
        self.target_arg = target
        self.traced = traced

    def start(self) -> None:
        """Base pass (inside the model-state context): base output, target, engine."""
        with torch.inference_mode():
            if self.method == "incremental":
                try:
                    self.engine = IncrementalEngine(
                        self.model,
                        self.image,
                        full_threshold=self.full_threshold,
                        traced=self.traced,
                    )
                    base = self.engine.base_output
                except Exception as e:  # fx cannot trace every model: stay exact, go slow
                    warnings.warn(
                        f"incremental occlusion cannot trace this model ({type(e).__name__}: "
                        f"{e}); using method='full'",
                        stacklevel=4,
                    )
                    self.engine = None
                    base = self.model(self.image)
            else:
                base = self.model(self.image)
        if not isinstance(base, torch.Tensor) or base.dim() != 2 or base.shape[0] != 1:
            shape = tuple(base.shape) if isinstance(base, torch.Tensor) else type(base).__name__
            raise ValueError(
                f"the model must return class scores of shape (1, num_classes) for one image, "
                f"got {shape}"
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

    def _positions(self, stride: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        _, _, h, w = self.image.shape
        ny = (h - self.patch[0]) // stride[0] + 1
        nx = (w - self.patch[1]) // stride[1] + 1
        gy, gx = torch.meshgrid(
            torch.arange(ny, device=self.device) * stride[0],
            torch.arange(nx, device=self.device) * stride[1],
            indexing="ij",
        )
        return gy.reshape(-1), gx.reshape(-1), ny, nx

    def _full_batch(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        b = ys.numel()
        ph, pw = self.patch
        x = self.image.expand(b, *self.image.shape[1:]).clone()
        for k, (y0, x0) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True)):
            x[k, :, y0 : y0 + ph, x0 : x0 + pw] = self.patch_value
        return self.model(x)

    def compute(self, stride: Any) -> OcclusionResult:
        sh, sw = _pair(stride, "stride")
        if sh <= 0 or sw <= 0:
            raise ValueError(f"stride {(sh, sw)} must be >= 1 in both dimensions")
        t0 = time.perf_counter()
        ys, xs, ny, nx = self._positions((sh, sw))
        n = ys.numel()
        engine = self.engine
        plan = engine.plan(self.patch, ys, xs) if engine is not None else None
        bs = self.batch_size or _default_batch(self.device, self.image, engine, engine is None)
        scores = torch.empty(n, dtype=torch.float32, device=self.device)
        dtype = _PRECISIONS[self.precision]
        start = 0
        with torch.inference_mode(), _TF32(self.device, self.precision):
            while start < n:
                stop = min(n, start + bs)
                try:
                    with (
                        FX_LOCK,  # no tracing on another thread while modules run here
                        torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None),
                    ):
                        if plan is not None:
                            out = engine.run(plan, start, stop, self.patch_value)
                        else:
                            out = self._full_batch(ys[start:stop], xs[start:stop])
                except Exception as e:
                    if _is_oom(e) and bs > 1:
                        bs = max(1, bs // 2)
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    raise
                scores[start:stop] = _score(out, self.target, self.output)
                start = stop
        err = None
        if self.precision != "fp32":
            with torch.inference_mode(), _TF32(self.device, "fp32"):
                err = self._precision_error(scores, ys, xs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return OcclusionResult(
            scores=scores.reshape(ny, nx).cpu().numpy().astype(np.float32),
            base_score=self.base_score,
            target=self.target,
            patch_size=self.patch,
            stride=(sh, sw),
            method="incremental" if engine is not None else "full",
            output=self.output,
            elapsed_s=time.perf_counter() - t0,
            batch_size=bs,
            device=str(self.device),
            precision=self.precision,
            precision_error=err,
            image_size=(int(self.image.shape[2]), int(self.image.shape[3])),
            extra={
                "full_nodes": plan.full_nodes if plan is not None else [],
                "rect_nodes": list(plan.rect_fracs) if plan is not None else [],
            },
        )

    def _precision_error(self, scores: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> float:
        """Max |reduced - fp32| over up to 64 evenly spread positions (fp32 by full recompute)."""
        n = ys.numel()
        idx = torch.linspace(0, n - 1, min(n, 64), device=self.device).round().long().unique()
        ref = _score(self._full_batch(ys[idx], xs[idx]), self.target, self.output)
        return float((scores[idx] - ref).abs().max().item())


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
) -> Iterator[OcclusionResult]:
    """Yield one finished :class:`OcclusionResult` per stride, coarse first.

    The base pass (the unoccluded activations, the target) is done once and shared by all
    strides. The model is in eval mode (and on ``device``) only while the generator runs a map;
    mode and device are restored between maps and when the generator is closed.
    Arguments as :func:`occlusion_map`; strides are validated before anything runs.
    ``traced``: the model's graph from :func:`~cnnviz_widgets.inspect.incremental.trace`, made
    beforehand on the main thread when this generator runs on another one.
    """
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
    )
    return _iterate(runner, strides)


def _iterate(runner: _Runner, strides: list[Any]) -> Iterator[OcclusionResult]:
    first = True
    for s in strides:
        with inference_state(runner.model, runner.device), _TF32(runner.device, runner.precision):
            if first:
                t0 = time.perf_counter()
                with FX_LOCK:  # the base forward: no tracing on another thread meanwhile
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
) -> OcclusionResult:
    """Occlusion map of ``model`` on ``image`` (see the module docstring for the definition).

    Args:
        model: a classifier returning (1, num_classes) scores for one (1, C, H, W) image.
        image: float tensor (C, H, W) or (1, C, H, W) in the model's input space.
        target: class index; None means the predicted class.
        patch_size, stride: int or (h, w); patches lie fully inside the image.
        baseline: float or tensor broadcastable to (C, patch_h, patch_w) pasted over the patch.
        output: "prob" (softmax probability of ``target``) or "logit".
        method: "incremental" (exact, recomputes only changed rectangles) or "full".
        batch_size: positions per batch; None picks one (CPU: fixed; CUDA: from free memory,
            halved on out-of-memory).
        device: where to compute; None means the model's device. The model is moved there for
            the call and moved back afterwards; its train/eval mode is restored too.
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
    )
    try:
        return next(gen)
    finally:
        gen.close()


def captum_equivalent(result: OcclusionResult, channels: int = 1) -> np.ndarray:
    """Captum ``Occlusion``'s per-pixel attribution (channels, H, W) implied by ``result``.

    ``attr[:, y, x]`` = mean over windows covering (y, x) of ``base_score - scores[i, j]``;
    0 where no window covers the pixel. Exact only when ``result`` was computed with the same
    score function Captum was given.
    """
    h, w = result.image_size
    ph, pw = result.patch_size
    sh, sw = result.stride
    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    drop = result.base_score - result.scores.astype(np.float64)
    for i in range(result.scores.shape[0]):
        for j in range(result.scores.shape[1]):
            total[i * sh : i * sh + ph, j * sw : j * sw + pw] += drop[i, j]
            count[i * sh : i * sh + ph, j * sw : j * sw + pw] += 1
    attr = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.broadcast_to(attr, (channels, h, w)).astype(np.float32)
