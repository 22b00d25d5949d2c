"""OcclusionMap: the Zeiler & Fergus occlusion heatmap, streamed coarse-to-fine."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import traitlets
from torch import nn

from .. import export, render
from ..inspect.dataset import class_names
from ..inspect.incremental import trace
from ..inspect.inputs import as_index, check_positive, model_device, model_image
from ..inspect.occlusion import OcclusionResult, map_shape, occlusion_maps
from ..inspect.predict import (
    bound_inputs,
    model_output,
    pick_scores,
    probabilities_of,
    scored_model,
    top_k,
)
from ..inspect.view import eval_view
from ..inspect.wrappers import unwrap
from ._codec import Array
from ._derived import derived
from ._job import JobWidget
from ._owner import Ticket
from ._tiles import bundle

#: the first map of a run has at most this many positions (4×4): it comes at once
FIRST_MAP_POSITIONS = 16


def coarse_to_fine(stride: int, patch: int, size: tuple[int, int] | None = None) -> list[int]:
    """Strides doubling up from `stride` while they stay within the patch, coarsest first;
    with the image's `size`, doubled further until the first map has at most
    `FIRST_MAP_POSITIONS` centred patches. (Each map's positions hold the coarser ones': the
    runner computes only the new ones, see `inspect.occlusion`.)"""
    strides = [stride]
    while strides[-1] * 2 <= patch:
        strides.append(strides[-1] * 2)
    while size is not None and _cells(size, strides[-1]) > FIRST_MAP_POSITIONS:
        strides.append(strides[-1] * 2)
    return strides[::-1]


def _cells(size: tuple[int, int], stride: int) -> int:
    return -(-size[0] // stride) * -(-size[1] // stride)


def default_patch(height: int, width: int) -> int:
    """A patch about a quarter of the shorter side (8 px at 32×32, 32 px at 224×224)."""
    return int(min(32, max(1, min(height, width) // 4)))


def check_strides(strides) -> list[int] | None:
    """The coarse-to-fine schedule given as `strides`: None, or a non-empty list of positive
    ints; else a ValueError naming the bad entry."""
    if strides is None:
        return None
    if isinstance(strides, (str, bytes)) or not isinstance(strides, Sequence):
        raise ValueError(
            f"strides must be a list of ints, coarsest first (e.g. [8, 4, 2]); got {strides!r}"
            " (for one map, pass stride=... instead)"
        )
    if not strides:
        raise ValueError(
            "strides is empty; give at least one stride, coarsest first (e.g. [8, 4, 2]), or "
            "leave it None for the default schedule"
        )
    return [check_positive(f"strides[{i}] =", s) for i, s in enumerate(strides)]


class OcclusionMap(JobWidget):
    """The image with the map of the target's score as a patch of `baseline` slides over it.

    Maps are computed on the model's background thread coarse-to-fine (`strides`, default
    doubling from `stride` up to the patch size) and each one is shown as soon as it is done.
    Changing `target`, `patch_size`, `stride`, `baseline`, `output` or `image` starts a new run
    and cancels the old one between maps. `results` holds the maps of the current run;
    `wait()` blocks until it is finished. A new `image` resets `target` to its predicted class.

    `class_scores`: where the class scores are in what the model returns, for a model that returns
    more than a tensor (an int index of a tuple, a str key or attribute, a callable; by
    default a tensor as it is and an object's `.logits`: see `inspect.predict.pick_scores`).
    `forward_args`: the model's further inputs after the image, held fixed (a tensor whose
    first dimension is 1 is expanded to each batch of occluded images).
    """

    _esm = bundle("occlusion_map.js")

    image = traitlets.Any()
    image_png = traitlets.Bytes(b"").tag(sync=True)
    image_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    #: the current map: the target's score with the patch at each place (rows, columns)
    scores = Array("float32", 2)
    map_patch = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    map_stride = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    #: unclipped top-left of the patch of score (0, 0), image px (negative: centred patches)
    map_origin = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    vmin = traitlets.Float(0.0).tag(sync=True)
    vmax = traitlets.Float(1.0).tag(sync=True)
    colormap = traitlets.Enum(list(render.COLORMAPS), "viridis").tag(sync=True)
    #: `colormap`'s lookup table (256, 3)
    colormap_lut = Array("uint8", 2)
    opacity = traitlets.Float(0.6, min=0.0, max=1.0).tag(sync=True)
    view_px = traitlets.Int(256).tag(sync=True)
    base_score = traitlets.Float(0.0).tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)
    target = traitlets.Int(0).tag(sync=True)
    top_classes = traitlets.List(traitlets.Dict()).tag(sync=True)
    class_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    patch_size = traitlets.Int(8).tag(sync=True)
    stride = traitlets.Int(2).tag(sync=True)
    baseline = traitlets.Float(0.0).tag(sync=True)
    output = traitlets.Enum(["prob", "logit"], "prob").tag(sync=True)
    maps_done = traitlets.Int(0).tag(sync=True)
    _unfinished = "the occlusion map was not finished"

    def __init__(
        self,
        model: nn.Module,
        image,
        target: int | None = None,
        *,
        patch_size: int | None = None,
        stride: int | None = None,
        strides: Sequence[int] | None = None,
        baseline: float = 0.0,
        output: str = "prob",
        classes: Sequence[str] | None = None,
        transform: Callable | None = None,
        device=None,
        method: str = "incremental",
        class_scores=None,
        forward_args: Sequence = (),
        **kwargs,
    ):
        model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
        self._model = model
        self._transform = transform
        self._device = device
        self._method = method
        if method not in ("incremental", "full"):
            raise ValueError(f"Unknown method {method!r}; methods are: incremental, full")
        self._strides = check_strides(strides)
        batch = self._batch(image)
        h, w = batch.shape[-2:]
        patch = default_patch(h, w) if patch_size is None else patch_size
        patch = check_positive("patch_size", patch, min(h, w))
        stride = max(1, patch // 4) if stride is None else check_positive("stride", stride)
        if not math.isfinite(baseline):
            raise ValueError(f"baseline must be a finite number; got {baseline!r}")
        names = class_names(classes)
        self._model, probs = scored_model(
            model, batch, device=device, forward_args=forward_args, class_scores=class_scores
        )  # the image alone in, the class scores alone out
        self._use_model(model, "occlusion")
        self._base: tuple = (None, None, None)  # (image, its version, the model's output on it)
        self.results: list[OcclusionResult] = []
        names = names if names is not None else [f"class {i}" for i in range(len(probs))]
        if len(names) != len(probs):
            raise ValueError(f"classes has {len(names)} names; the model scores {len(probs)}")
        super().__init__(
            image=image,
            class_names=names,
            patch_size=patch,
            stride=stride,
            baseline=baseline,
            output=output,
            target=int(np.argmax(probs)) if target is None else as_index("target", target),
            **kwargs,
        )
        self.colormap_lut = render.colormap_lut(self.colormap)
        self._show_image(batch, probs)
        self._start()
        self.observe(self._on_image, names=["image"])
        self.observe(self._start, names=["target", "patch_size", "stride", "baseline", "output"])
        self.observe(self._on_colormap, names=["colormap"])

    def _batch(self, image):
        return model_image(self._model, image, self._transform)

    @traitlets.validate("image")
    def _valid_image(self, proposal):
        h, w = self._batch(proposal["value"]).shape[-2:]
        if self.image_shape[0] and self.patch_size > min(h, w):
            raise ValueError(
                f"patch_size {self.patch_size} is larger than the new image ({h}×{w}); set "
                f"patch_size to at most {min(h, w)} first"
            )
        return proposal["value"]

    @traitlets.validate("target")
    def _valid_target(self, proposal):
        n = len(self.class_names) if self.class_names else None
        if n is not None and not 0 <= proposal["value"] < n:
            raise traitlets.TraitError(f"target {proposal['value']} is out of range 0..{n - 1}")
        return proposal["value"]

    @traitlets.validate("patch_size", "stride")
    def _valid_geometry(self, proposal):
        value, name = proposal["value"], proposal["trait"].name
        upper = min(self.image_shape) if name == "patch_size" and self.image_shape[0] else None
        try:
            return check_positive(name, value, upper)
        except ValueError as err:
            raise traitlets.TraitError(str(err)) from err

    @traitlets.validate("baseline")
    def _valid_baseline(self, proposal):
        if not math.isfinite(proposal["value"]):
            raise traitlets.TraitError(f"baseline must be a finite number; got {proposal['value']}")
        return proposal["value"]

    def _show_image(self, batch, probs) -> None:
        h, w = batch.shape[-2:]
        with self.hold_sync():
            self.image_png = render.png_bytes(render.display_image(batch[0].float().numpy()))
            self.image_shape = [int(h), int(w)]
            self.top_classes = [
                {"index": i, "name": self.class_names[i], "score": p} for i, p in top_k(probs, 5)
            ]

    def _on_image(self, change) -> None:
        batch = self._batch(change["new"])
        logits = pick_scores(model_output(self._model, batch, device=self._device))
        probs = probabilities_of(logits)
        self._base = (change["new"], _version(change["new"]), logits)  # the run's base pass
        self._show_image(batch, probs)
        target = int(np.argmax(probs))
        if target != self.target:
            self.target = target  # starts the run through the observer
        else:
            self._start()

    def _on_colormap(self, change) -> None:
        self.colormap_lut = render.colormap_lut(change["new"])

    def schedule(self, size: tuple[int, int] | None = None) -> list[int]:
        """The strides of a run on an image of `size` (default: the current one), coarsest
        first."""
        if self._strides is not None:
            return self._strides
        size = size or tuple(self._batch(self.image).shape[-2:])
        return coarse_to_fine(self.stride, self.patch_size, size)

    def _graph(self, batch):
        """The model's fx graph at this image's shape (the engine retraces at any other), once
        per model structure and image shape, shared by the model's widgets (`_derived.py`);
        traced in the job, on the model's thread. None where the engine traces for itself
        (the full method, another device) or where the model cannot be traced (the run then
        says so and goes full)."""
        m = self._model
        here = model_device(m)
        elsewhere = self._device is not None and torch.device(self._device) != here
        if self._method != "incremental" or elsewhere:
            return None

        def make():
            with contextlib.suppress(Exception):
                return (trace(eval_view(m), batch.to(here)),)  # the model stays as it is
            return (None,)

        return derived(m, ("graph", tuple(batch.shape)), make)[0]

    def _start(self, change=None) -> None:
        batch = self._batch(self.image)
        params = {
            "method": self._method,
            "image": batch,
            "strides": self.schedule(tuple(batch.shape[-2:])),
            "target": self.target,
            "patch_size": self.patch_size,
            "baseline": self.baseline,
            "output": self.output,
        }
        image, version, logits = self._base
        if image is self.image and version is not None and version == _version(image):
            params["base_output"] = logits  # this image's forward, made for its predicted class
        results: list[OcclusionResult] = []  # this run's own: a stale run can't touch a newer one's
        self.results = results
        self._begin(maps_done=0, status="starting…")
        self._lane.submit(  # the coarse map goes first; the finer ones queue (see `_step`)
            lambda ticket: self._run(params, results, ticket), interactive=True
        )

    def _run(self, params: dict, results: list, ticket: Ticket) -> None:
        strides = params.pop("strides")
        h, w = params["image"].shape[-2:]
        p = params["patch_size"]
        run = {
            "total": sum(int(np.prod(map_shape((h, w), p, s, "centered"))) for s in strides),
            "strides": len(strides),
            "done": 0,
            "t0": time.perf_counter(),
        }

        def start():
            params["traced"] = self._graph(params["image"])
            inputs = bound_inputs(self._model)  # the tracer's placeholders: the engine's inputs
            return occlusion_maps(
                self._model, **params, strides=strides, device=self._device, forward_args=inputs
            )

        self._step(start, results, run, ticket)

    def _step(self, maps, results: list, run: dict, ticket: Ticket) -> None:
        """One map of the run: the coarsest in the interactive job (`maps` is then the function
        that starts the run), each finer one in a background job of this lane that the one
        before queues (`ticket.then`), behind the model's background work already waiting (a
        dataset pass), and with interactive work (a new click) between maps."""

        handed = False

        def work(post) -> None:
            nonlocal maps, handed
            if callable(maps):
                maps = maps()
            res = next(maps, None)
            if res is None or not ticket():
                return
            run["done"] += res.positions
            results.append(res)
            seconds = time.perf_counter() - run["t0"]
            traits = self._map_traits(res, len(results), run["done"] / run["total"], seconds)
            post(lambda: self._set(**traits))
            if len(results) < run["strides"]:
                ticket.then(lambda t: self._step(maps, results, run, t))
                handed = True

        try:
            self._guarded(ticket, work)  # an error ends the run, its `status` says what failed
        finally:
            if not handed:  # the run ends here
                if maps is not None and not callable(maps):
                    maps.close()
                self._post(lambda: self._set(running=False), ticket)

    def _map_traits(self, res: OcclusionResult, count: int, progress: float, seconds: float):
        scores = res.scores.astype(np.float32)
        what = "probability" if res.output == "prob" else "logit"
        return {
            "scores": scores,
            "map_patch": list(res.patch_size),
            "map_stride": list(res.stride),
            "map_origin": [int(res.starts[0][0]), int(res.starts[1][0])],
            "base_score": float(res.base_score),
            "vmin": float(min(scores.min(), res.base_score)),
            "vmax": float(max(scores.max(), res.base_score)),
            "caption": f"{what} of '{self.class_names[res.target]}' with the patch at each place",
            "status": f"stride {res.stride[0]} · {res.positions} positions · {seconds:.2f} s",
            "progress": progress,
            "maps_done": count,
        }

    def wait(self, timeout: float | None = 120) -> OcclusionResult | None:
        """Block until the current run is finished; returns its finest map. On a closed widget
        it returns at once (closing ended the run): the finest map done before, or None."""
        super().wait(timeout)
        return self.result if self._closed else self.results[-1]

    @property
    def result(self) -> OcclusionResult | None:
        """The finest map finished so far in the current run."""
        return self.results[-1] if self.results else None

    def _png_image(self) -> np.ndarray:
        """The image with the current map over it, as shown."""
        return export.occlusion_image(self)


def _version(image) -> int | None:
    """A tensor's in-place version counter (the same object at the same version holds the same
    values); None for anything else."""
    return image._version if isinstance(image, torch.Tensor) else None
