"""The model zoo: every torchvision classification CNN, popular timm CNNs and hand-written models.

For each model (random weights, random BatchNorm statistics, a small random image):

* **occlusion**: ``method="incremental"`` and ``method="full"`` each equal a plain loop that
  occludes one image at a time and runs the model on it alone (the loop builds its occluded
  images from the placement's definition, not from the library), in probability (max abs diff
  <= 1e-4) and in logits (relative to the logits' scale), for every placement the library has;
* **receptive fields**: every layer with a (C, H, W) output gets a field (a 1x1 map computed
  from a global reduction may say it has none): exact, a bound (after upsampling or a strided
  transposed conv) or the whole image (after attention); for a few sampled units of a few
  layers the input pixels with a nonzero gradient lie inside the unit's field, and where the
  field is the whole image the gradient does reach every border;
* **widgets**: FeatureMaps and TopPatches build on the deepest feature map (the explorer's
  default layer) over 8 random images, and show what a direct forward pass gives.

Models are built once per test module (a module-scoped fixture: pytest runs all checks of one
model before building the next). The largest models run in a cheaper mode (fewer positions,
one placement, 4 images), marked ``-cheap`` in their test ids. When the incremental engine
falls back to full recompute it warns; which models warn and why is recorded (not a failure):
set ``CNNVIZ_ZOO_REPORT=path`` to get one JSON line per check.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from cnnviz_widgets.inspect import capture, layer_catalogue
from cnnviz_widgets.inspect.layers import default_layer
from cnnviz_widgets.inspect.occlusion import occlusion_map
from cnnviz_widgets.inspect.receptive import analyse_fields
from cnnviz_widgets.widgets.activations import FeatureMaps
from cnnviz_widgets.widgets.patches import TopPatches, layer_choices

from .zoo_models import HANDWRITTEN, BoundArgs, calibrate, he_init

PROB_TOL = 1e-4  #: max abs diff in probability
LOGIT_RTOL = 1e-4  #: max abs diff in logits, relative to the largest |logit| of the map
BASELINE = 0.5  #: not 0: a patch of zeros would look like zero padding at the border

# ------------------------------------------------------------------------- the cases

#: inputs other than 32x32 (the smallest that works, or that keeps every stage spatial)
TV_SIZES = {"alexnet": 64, "inception_v3": 75, "maxvit_t": 224}
#: the largest models: fewer positions, one placement, fewer images
TV_CHEAP = {
    "regnet_y_128gf",
    "regnet_y_32gf",
    "regnet_x_32gf",
    "convnext_large",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "vgg19",
    "vgg19_bn",
    "wide_resnet101_2",
    "maxvit_t",
}
TIMM_MODELS = {
    # name: input side
    "resnet18": 32,
    "efficientnet_b0": 32,
    "tf_efficientnet_lite0": 32,  # Conv2dSame ("same" padding computed from the input size)
    "tf_efficientnet_b0": 32,
    "mobilenetv3_small_100": 32,
    "convnext_atto": 32,
    "dla34": 32,
    "ese_vovnet19b_dw": 32,
    "regnety_002": 32,
    "hrnet_w18_small": 32,
    "dpn68": 32,
    "rexnet_100": 32,
    "ghostnet_100": 32,
    "mobilevit_xxs": 64,
    "nf_resnet26": 32,  # scaled weight-standardised convs
    "resnetv2_50x1_bit": 32,  # StdConv2d + GroupNormAct
    "resnest14d": 32,  # split attention
    "mixnet_s": 32,  # mixed kernel sizes (split + concat)
}
#: models whose own random init barely moves the logits when a patch is occluded (the map
#: checks would be vacuous): re-initialised with He-normal weights, then every conv/linear
#: rescaled to unit output std on the dataset (tests/zoo_models.he_init, calibrate)
HE_INIT = (
    "tv-efficientnet_",
    "tv-mnasnet",
    "tv-mobilenet_",
    "tv-shufflenet_",
    "tv-googlenet",
    "timm-efficientnet_b0",
    "timm-tf_efficientnet_",
    "timm-ese_vovnet19b_dw",
    "timm-ghostnet_100",
    "timm-mobilenetv3_",
)
#: timm models whose per-image statistics (GroupNorm) reach every pixel of a map
TIMM_NO_PROBE = {"resnetv2_50x1_bit"}


def _torchvision_names() -> list[str]:
    names = torchvision.models.list_models(module=torchvision.models)
    return [n for n in names if not n.startswith(("vit_", "swin_"))]


@dataclass
class Case:
    """One zoo model: how to build it and what to run it on."""

    name: str
    build: Any
    shape: tuple[int, int, int]
    patch: tuple[int, int]
    stride: tuple[int, int]
    forward_args: tuple = ()
    probe: bool = True
    cheap: bool = False
    needs: str | None = None  #: a package the case needs (timm)

    @property
    def id(self) -> str:
        return self.name + ("-cheap" if self.cheap else "")


def _geometry(h: int, w: int, cheap: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """A patch of a quarter of the image, and a stride giving 3 (cheap: 2) positions per axis."""
    per_axis = 2 if cheap else 3
    patch = (max(2, h // 4), max(2, w // 4))
    stride = (h // per_axis + 1, w // per_axis + 1)
    return patch, stride


def _cases() -> list[Case]:
    cases = []
    for name in _torchvision_names():
        s = TV_SIZES.get(name, 32)
        cheap = name in TV_CHEAP
        patch, stride = _geometry(s, s, cheap)
        cases.append(
            Case(
                f"tv-{name}",
                lambda name=name: torchvision.models.get_model(name, weights=None),
                (3, s, s),
                patch,
                stride,
                cheap=cheap,
            )
        )
    for name, s in TIMM_MODELS.items():
        patch, stride = _geometry(s, s, False)

        def build(name=name):
            import timm

            return timm.create_model(name, pretrained=False)

        cases.append(
            Case(
                f"timm-{name}",
                build,
                (3, s, s),
                patch,
                stride,
                probe=name not in TIMM_NO_PROBE,
                needs="timm",
            )
        )
    for name, hw in HANDWRITTEN.items():
        _, h, w = hw.shape
        patch, stride = _geometry(h, w, False)
        cases.append(
            Case(
                f"hand-{name}",
                lambda hw=hw, name=name: he_init(hw.build(), sum(map(ord, name))),
                hw.shape,
                hw.patch or patch,
                hw.stride or stride,
                forward_args=hw.forward_args,
                probe=hw.probe,
            )
        )
    return cases


CASES = _cases()

# ------------------------------------------------------------------ placements


def _placements() -> list[str]:
    """The placements to test: the library's (default first), or its one placement of old."""
    params = inspect.signature(occlusion_map).parameters
    if "placement" not in params:
        return ["legacy"]
    default = params["placement"].default
    return [default] + [p for p in ("centered", "inside") if p != default]


PLACEMENTS = _placements()


def windows(n: int, patch: int, stride: int, placement: str) -> list[tuple[int, int]]:
    """The half-open [start, stop) rows (or columns) of each patch position along one axis.

    * ``"centered"``: a patch centred on every stride-th pixel, centres 0, s, 2s, ... < n,
      covering [c - patch // 2, c - patch // 2 + patch) clipped to the image;
    * ``"inside"``: Captum's ``Occlusion`` windows: starts 0, s, 2s, ... for
      ``ceil((n - patch) / s) + 1`` windows, the last one clipped at the far border when
      ``(n - patch) % s != 0`` (captum/attr/_core/occlusion.py: ``shift_counts`` and the
      negative padding of ``_occlusion_mask``);
    * ``"legacy"``: the library's placement before ``placement=`` existed: starts 0, s, 2s, ...
      while the patch fits.
    """
    if placement == "centered":
        return [
            (max(c - patch // 2, 0), min(c - patch // 2 + patch, n)) for c in range(0, n, stride)
        ]
    if placement == "inside":
        count = -(-(n - patch) // stride) + 1
        return [(i * stride, min(i * stride + patch, n)) for i in range(count)]
    if placement == "legacy":
        return [(s, s + patch) for s in range(0, n - patch + 1, stride)]
    raise ValueError(placement)


# ------------------------------------------------------------------------- fixtures


def _randomize_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (random init: mean 0, var 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.1)


def _report(case: Case, check: str, ok: bool, **info: Any) -> None:
    path = os.environ.get("CNNVIZ_ZOO_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"case": case.id, "check": check, "ok": ok, **info}) + "\n")


class Built:
    """A built zoo model with its image and the one-image-at-a-time reference maps."""

    def __init__(self, case: Case) -> None:
        self.case = case
        seed = sum(map(ord, case.name))
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's init-weights FutureWarnings
            self.model = case.build().eval()
        if case.name.startswith(HE_INIT):
            he_init(self.model, seed)
        _randomize_bn(self.model, seed)
        g = torch.Generator().manual_seed(seed)
        self.image = torch.randn(*case.shape, generator=g)
        self.dataset = [(torch.randn(*case.shape, generator=g), i % 3) for i in range(8)]
        if case.name.startswith(HE_INIT):
            calibrate(self.model, torch.stack([x for x, _ in self.dataset]))
        if case.cheap:
            self.dataset = self.dataset[:4]
        with torch.inference_mode():
            self.base_logits = self.model(self.image[None], *case.forward_args)[0].float()
            # the model's own float32 difference between a batch of 1 and of 2 (other kernels;
            # a few deep nets differ by ~1e-3 of their logits): maps computed in batches carry it
            two = torch.stack([self.image, self.image])
            args = [
                a.expand(2, *a.shape[1:]) if torch.is_tensor(a) else a for a in case.forward_args
            ]
            batched = self.model(two, *args)[0].float()
        self.batch_noise = {
            "logit": float((batched - self.base_logits).abs().max()),
            "prob": float((batched.softmax(0) - self.base_logits.softmax(0)).abs().max()),
        }
        self.target = int(self.base_logits.argmax())
        self._loops: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        # the other tools take one-argument models: bind the extra arguments as a user would
        self.single = BoundArgs(self.model, *case.forward_args) if case.forward_args else self.model

    def loop(self, placement: str) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probabilities) of the target, one occluded image per forward pass."""
        if placement not in self._loops:
            _, h, w = self.case.shape
            rows = windows(h, self.case.patch[0], self.case.stride[0], placement)
            cols = windows(w, self.case.patch[1], self.case.stride[1], placement)
            logits = np.zeros((len(rows), len(cols)), np.float64)
            probs = np.zeros_like(logits)
            with torch.inference_mode():
                for i, (y0, y1) in enumerate(rows):
                    for j, (x0, x1) in enumerate(cols):
                        x = self.image.clone()
                        x[:, y0:y1, x0:x1] = BASELINE
                        out = self.model(x[None], *self.case.forward_args)[0].double()
                        logits[i, j] = out[self.target].item()
                        probs[i, j] = torch.softmax(out, 0)[self.target].item()
            self._loops[placement] = logits, probs
        return self._loops[placement]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def built(request) -> Built:
    case: Case = request.param
    if case.needs:
        try:
            __import__(case.needs)
        except ImportError:
            why = f"{case.needs} is not installed (pip install {case.needs})"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{why}; a zoo model may not be skipped in CI")
            pytest.skip(why)
    return Built(case)


# -------------------------------------------------------------------------- occlusion


def _occlude(b: Built, method: str, output: str, placement: str):
    kw: dict[str, Any] = {}
    if placement != "legacy":
        kw["placement"] = placement
    if b.case.forward_args:
        kw["forward_args"] = b.case.forward_args
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = occlusion_map(
            b.model,
            b.image,
            target=b.target,
            patch_size=b.case.patch,
            stride=b.case.stride,
            baseline=BASELINE,
            output=output,
            method=method,
            **kw,
        )
    notes = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return res, notes


def _compare(b: Built, method: str) -> None:
    failures, info = [], {}
    for placement in PLACEMENTS[:1] if b.case.cheap else PLACEMENTS:
        ref_logits, ref_probs = b.loop(placement)
        scale = float(max(np.abs(ref_logits).max(), abs(b.base_logits[b.target].item())))
        logit_tol = LOGIT_RTOL * scale + 1e-6
        for output, ref, tol in (("prob", ref_probs, PROB_TOL), ("logit", ref_logits, logit_tol)):
            where = f"{placement}/{output}"
            tol = max(tol, 2 * b.batch_noise[output])
            try:
                res, notes = _occlude(b, method, output, placement)
            except Exception as e:
                failures.append(f"{where}: {type(e).__name__}: {e}")
                continue
            if notes:
                info[f"{where} warnings"] = notes
            info[f"{where} method"] = res.method
            if method == "incremental":
                info[f"{where} rect_nodes"] = len(res.extra.get("rect_nodes", []))
            if res.scores.shape != ref.shape:
                failures.append(f"{where}: map shape {res.scores.shape} != loop's {ref.shape}")
                continue
            diff = float(np.abs(res.scores.astype(np.float64) - ref).max())
            info[f"{where} max_abs_diff"] = diff
            if not diff <= tol:  # also catches NaN
                failures.append(f"{where}: max abs diff {diff:.3g} > {tol:.3g}")
            base = b.base_logits[b.target].item()
            base_ref = base if output == "logit" else torch.softmax(b.base_logits, 0)[b.target]
            if not abs(res.base_score - float(base_ref)) <= tol:
                failures.append(f"{where}: base_score {res.base_score:.6g} != {base_ref:.6g}")
    _report(b.case, method, not failures, failures=failures, **info)
    assert not failures, f"{b.case.id} {method}:\n" + "\n".join(failures)


# Known open failures, (case id, check) -> reason ("receptive", "widgets"): none at present.
# Strict: a fix turns the xfail into a failure until the entry is removed here.
KNOWN_OPEN: dict[tuple[str, str], str] = {}


def _mark_known(request, built: Built, check: str) -> None:
    reason = KNOWN_OPEN.get((built.case.id, check))
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"open (#10): {reason}"))


def test_loop_reference_is_not_vacuous(built: Built):
    """The patch changes the target's logit somewhere (else the map checks would prove nothing)."""
    logits, _ = built.loop(PLACEMENTS[0])
    base = built.base_logits[built.target].item()
    scale = max(np.abs(logits).max(), abs(base))
    assert np.abs(logits - base).max() > 10 * (LOGIT_RTOL * scale + 1e-6), (logits, base)


def test_incremental_equals_one_image_loop(built: Built, monkeypatch):
    # At these small inputs the cost model would often pick the full recompute (FLOP bound
    # below its threshold); the engine is what is tested here, so it must run whenever it can.
    from cnnviz_widgets.inspect import occlusion

    if hasattr(occlusion, "MIN_FLOP_BOUND"):
        monkeypatch.setattr(occlusion, "MIN_FLOP_BOUND", 0.0)
    _compare(built, "incremental")


def test_full_equals_one_image_loop(built: Built):
    _compare(built, "full")


# -------------------------------------------------------------------- receptive fields


def _hw(rf) -> tuple[int, int]:
    """(H, W) of a field's map, channels-first or channels-last."""
    shape = rf.output_shape
    return (shape[0], shape[1]) if getattr(rf, "layout", "CHW") == "HWC" else (shape[1], shape[2])


def _probe_layers(names: list[str], fields: dict) -> list[str]:
    """Up to three ungated, unshifted layers with more than one unit: early, middle, deep.

    A gated or shifted field (squeeze-excite, a subtracted mean) is geometric by definition
    while the gradient also flows through the global statistics, so such layers are not
    probed; a field of the whole image holds any gradient (`_whole_map_probe` checks those)."""
    usable = [
        n
        for n in names
        if math.prod(_hw(fields[n])) > 1
        and not getattr(fields[n], "gated", False)
        and not getattr(fields[n], "shifted", False)
        and getattr(fields[n], "kind", "exact") != "image"
    ]
    if len(usable) <= 3:
        return usable
    return [usable[0], usable[len(usable) // 2], usable[-1]]


def _field(analysis, name: str):
    if "channels_last" in inspect.signature(analysis.field).parameters:
        return analysis.field(name, channels_last=True)
    return analysis.field(name)


def test_receptive_fields(built: Built, request):
    _mark_known(request, built, "receptive")
    model, image = built.single, built.image
    c, h, w = built.case.shape
    catalogue = layer_catalogue(model, image[None])
    analysis = analyse_fields(model, (h, w), channels=c)
    fields, missing, whole = {}, [], []
    for info in catalogue:
        if not info.is_spatial:
            continue
        try:
            fields[info.name] = rf = _field(analysis, info.name)
        except ValueError as e:
            one_unit = info.output_shape[1:] == (1, 1)
            if one_unit and "has no spatial output" in str(e):
                continue  # a 1x1 map from a global reduction (squeeze-excite)
            missing.append(f"{info.name} ({info.type}, {info.output_shape}): {e}")
            continue
        if getattr(rf, "kind", "exact") == "image":
            whole.append(info.name)  # the whole image (attention): checked below by the probe
    bad = []
    for name, rf in fields.items():
        shape = next(i.output_shape for i in catalogue if i.name == name)
        if tuple(rf.output_shape) != tuple(shape):
            bad.append(f"{name}: field's output_shape {rf.output_shape} != layer's {shape}")
    probed = _probe_layers(list(fields), fields) if built.case.probe else []
    if built.case.probe:
        bad += _gradient_probe(model, image, probed, fields)
        bad += _whole_map_probe(model, image, whole)
    spatial = sum(i.is_spatial for i in catalogue)
    _report(
        built.case,
        "receptive",
        not (missing or bad),
        spatial=spatial,
        without_field=len(missing),
        whole_map=len(whole),
        probed=probed,
        missing=missing[:5],
        bad=bad,
    )
    assert not missing, f"{len(missing)}/{spatial} spatial layers without a field:\n" + "\n".join(
        missing[:10]
    )
    assert not bad, "\n".join(bad)


def _whole_map_probe(model, image, names: list[str]) -> list[str]:
    """Layers whose field is the whole image: a unit's gradient does reach every border."""
    bad = []
    _, h, w = image.shape
    picks = names if len(names) <= 3 else [names[0], names[len(names) // 2], names[-1]]
    for name in picks:
        out = _layer_output(model, name, image[None])
        oh, ow = out.shape[-2:]
        box = _gradient_box(model, name, image, oh // 2, ow // 2)
        if box is not None and box != (0, h, 0, w):
            bad.append(
                f"{name}: its field is the whole image, but unit ({oh // 2}, {ow // 2})'s "
                f"gradient stays in rows {box[0]}:{box[1]}, cols {box[2]}:{box[3]}"
            )
    return bad


def _layer_output(model, name: str, x: torch.Tensor) -> torch.Tensor:
    """`name`'s output (its last call) when `model` runs on `x`."""
    got = {}
    module = dict(model.named_modules())[name]
    handle = module.register_forward_hook(lambda m, a, out: got.__setitem__("o", out))
    try:
        model(x)
    finally:
        handle.remove()
    return got["o"]


def _unit(out: torch.Tensor, i: int, j: int, layout: str) -> torch.Tensor:
    """All channels of unit (i, j) of a (N, C, H, W) or channels-last (N, H, W, C) map."""
    return out[:, i, j, :] if layout == "HWC" else out[:, :, i, j]


def _gradient_box(model, name, image, i, j, layout="CHW"):
    """(y0, y1, x0, x1) of the input pixels with a nonzero gradient of unit (i, j), or None."""
    x = image[None].clone().requires_grad_(True)
    with torch.enable_grad():
        out = _layer_output(model, name, x)
        (grad,) = torch.autograd.grad(_unit(out, i, j, layout).sum(), x, allow_unused=True)
    if grad is None:
        return None
    ys, xs = torch.nonzero(grad[0].abs().sum(0), as_tuple=True)
    if len(ys) == 0:
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _perturbation_box(model, name, image, i, j, layout="CHW"):
    """Like `_gradient_box`, by perturbing one whole row (or column) per image of a batch.

    For models that autograd cannot differentiate (an in-place op on a tensor a backward
    needs); exact for what it reports: a row changes the unit only if some pixel of it does.
    """
    _, h, w = image.shape
    g = torch.Generator().manual_seed(0)
    batch = image[None].repeat(1 + h + w, 1, 1, 1)  # [0]: the image itself, same batch
    for r in range(h):
        batch[1 + r, :, r, :] += 3 * torch.randn(batch[1 + r, :, r, :].shape, generator=g)
    for c in range(w):
        col = batch[1 + h + c, :, :, c]
        col += 3 * torch.randn(col.shape, generator=g)
    with torch.inference_mode():
        out = _unit(_layer_output(model, name, batch), i, j, layout)
    # a relative threshold: batched float rounding may differ from image to image
    changed = (out[1:] - out[0]).abs().amax(1) > 1e-5 * float(out[0].abs().max()) + 1e-7
    rows = torch.nonzero(changed[:h]).flatten()
    cols = torch.nonzero(changed[h:]).flatten()
    if len(rows) == 0 or len(cols) == 0:
        return None
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def _gradient_probe(model, image, layers: list[str], fields: dict) -> list[str]:
    """Input pixels with a nonzero gradient of a few units lie inside those units' fields."""
    bad = []
    for name in layers:
        rf = fields[name]
        oh, ow = _hw(rf)
        layout = getattr(rf, "layout", "CHW")
        for i, j in sorted({(0, 0), (oh // 2, ow // 2), (oh - 1, ow - 1)}):
            try:
                seen = _gradient_box(model, name, image, i, j, layout)
                how = "gradient"
            except RuntimeError as e:
                if "inplace" not in str(e):
                    raise
                seen = _perturbation_box(model, name, image, i, j, layout)
                how = "perturbation"
            if seen is None:
                continue
            y0, y1, x0, x1 = rf.clipped_box(i, j)
            if seen[0] < y0 or seen[1] > y1 or seen[2] < x0 or seen[3] > x1:
                bad.append(
                    f"{name} unit ({i}, {j}): the {how} reaches rows {seen[0]}:{seen[1]}, "
                    f"cols {seen[2]}:{seen[3]}, outside its field rows {y0}:{y1}, cols {x0}:{x1} "
                    f"({rf.describe()}, offset {rf.offset})"
                )
    return bad


# ---------------------------------------------------------------------------- widgets


def test_feature_maps_and_top_patches(built: Built, request):
    _mark_known(request, built, "widgets")
    model, image, dataset = built.single, built.image, built.dataset
    layer = default_layer(model, layer_choices(model, image[None]))
    fm = FeatureMaps(model, image, layer=layer)
    top = None
    try:  # closed at the end: ipywidgets keeps every open widget (and its model) alive
        expect = capture(model, image[None], [layer])[layer][0]
        np.testing.assert_allclose(fm.activations, expect.numpy(), rtol=1e-5, atol=1e-6)
        top = TopPatches(model, dataset, layer, k=2, progress=False, batch_size=len(dataset))
        top.wait()
        batch = torch.stack([x for x, _ in dataset])
        act = capture(model, batch, [layer])[layer]
        best = act.flatten(2).amax(dim=2).max(dim=0).values  # (C,) each channel's best unit
        np.testing.assert_allclose(top.top.values[:, 0], best.numpy(), rtol=1e-4, atol=1e-5)
        assert top.top.field.layer == layer
    finally:
        fm.close()
        if top is not None:
            top.close()
    _report(built.case, "widgets", True, layer=layer, shape=list(expect.shape))


def test_zoo_covers_every_torchvision_cnn():
    names = {c.name for c in CASES}
    for name in _torchvision_names():
        assert f"tv-{name}" in names
    assert len(HANDWRITTEN) >= 12 and len(TIMM_MODELS) >= 12
    assert not TV_CHEAP - set(_torchvision_names()), "cheap-mode names must be real models"
