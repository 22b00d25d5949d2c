"""Occlusion benchmark: incremental vs full recompute vs Captum ``Occlusion``.

    python benchmarks/occlusion.py --device cpu --model resnet18 --patch 16 --stride 8
    python benchmarks/occlusion.py --device cuda --model resnet18 --stride 1 --precision bf16
    python benchmarks/occlusion.py --model efficientnet_b0 mobilenet_v3_large convnext_tiny \
        regnet_y_400mf tf_efficientnet_lite0 --stride 8

Prints one JSON line per configuration (model, device, size, positions, ours_s, full_s,
captum_s, speedup_vs_captum, speedup_vs_full, max_abs_diff, threads, torch, ...). Every time
is the median of ``--repeats`` runs in this one process; the three methods are interleaved
per repeat so that load from other processes hits them alike. Models are torchvision's with
``weights=None`` (the weights do not change the cost), or timm's (``TIMM_MODELS``,
``pretrained=False``); the score is the softmax probability of the predicted class, for all
three methods (Captum gets ``softmax(model(x))`` as forward). Ours runs with
``placement="inside"`` by default, Captum's windows, so all three compute the same positions.
``flop_bound`` is the library's own (``result.extra["flop_bound"]``: full / incremental
conv+linear MACs of the plan it ran); ``method`` says whether ours ran incrementally or chose
(or fell back to) the full recompute, and ``warnings`` why.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnviz_widgets.inspect.incremental import (
    DEFAULT_FULL_THRESHOLD,
    IncrementalEngine,
    plan_macs,
)
from cnnviz_widgets.inspect.occlusion import occlusion_map

#: torchvision classifiers the benchmark knows (any name of torchvision.models works)
TORCHVISION_MODELS = [
    "resnet18",
    "vgg16",
    "alexnet",
    "efficientnet_b0",
    "mobilenet_v3_large",
    "convnext_tiny",
    "regnet_y_400mf",
]
#: timm models (TF "same" padding: Conv2dSame)
TIMM_MODELS = ["tf_efficientnet_lite0"]


def build_model(name: str) -> tuple[torch.nn.Module, int, int]:
    """(model, channels, default size)."""
    if name == "demo":
        try:
            from cnnviz_widgets.demo import load_demo

            model, _, _ = load_demo()
        except Exception:  # weights not shipped yet: same architecture, random init
            from cnnviz_widgets.demo.model import DigitsCNN

            model = DigitsCNN()
        return model.eval(), 1, 32
    if name in TIMM_MODELS:
        import timm

        return timm.create_model(name, pretrained=False).eval(), 3, 224
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval(), 3, 224


def captum_run(model, x, target, patch, stride, baseline, ppe):
    from captum.attr import Occlusion

    def forward(inp):
        return torch.softmax(model(inp), dim=1)

    occ = Occlusion(forward)
    c = x.shape[1]
    return occ.attribute(
        x,
        target=target,
        sliding_window_shapes=(c, patch, patch),
        strides=(c, stride, stride),
        baselines=baseline,
        perturbations_per_eval=ppe,
    )


def flop_bound(model, x, patch, stride, threshold):
    """Full / incremental conv+linear MACs for this geometry (Captum's inside windows, the
    last one shifted inward as the engine plans it): the bound on speedup_vs_full."""
    with torch.inference_mode():
        eng = IncrementalEngine(model, x, full_threshold=threshold, warn=False)
        _, _, h, w = x.shape

        def starts(n):
            return (torch.arange(-(-(n - patch) // stride) + 1) * stride).clamp(max=n - patch)

        gy, gx = torch.meshgrid(starts(h), starts(w), indexing="ij")
        inc, full = plan_macs(eng, eng.plan((patch, patch), gy.reshape(-1), gx.reshape(-1)))
    return round(full / inc, 3)


def sweep(model, x, target, args, stride, name):
    """ours_s at several full_threshold values (interleaved repeats), one JSON line each."""
    times = {t: [] for t in args.thresholds}
    common = dict(
        target=target,
        patch_size=args.patch,
        stride=stride,
        batch_size=args.batch_size,
        placement=args.placement,
    )
    occlusion_map(model, x, **common)
    for _ in range(args.repeats):
        for t in args.thresholds:
            s, _ = timed(lambda t=t: occlusion_map(model, x, full_threshold=t, **common))
            times[t].append(s)
    for t in args.thresholds:
        print(
            json.dumps(
                {
                    "model": name,
                    "device": args.device,
                    "size": x.shape[-1],
                    "stride": stride,
                    "full_threshold": t,
                    "ours_s": round(statistics.median(times[t]), 4),
                    "runs": [round(v, 3) for v in times[t]],
                    "flop_bound": flop_bound(model, x, args.patch, stride, t),
                    "batch_size": args.batch_size,
                    "threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )


def measure_threshold(device: torch.device, batch: int, repeats: int) -> None:
    """Rectangle vs full cost of one 3x3 conv layer (with its gather / paste), per area fraction.

    For ResNet-like layer shapes, times (a) gathering ``batch`` windows from the padded base with
    the previous rectangle pasted in, plus the conv on the windows, against (b) pasting the
    rectangle into ``batch`` full maps plus the conv on the full maps. Calls alternate so load
    from other processes hits both alike. Prints one JSON line per shape with the ratio at each
    fraction and the crossover fraction (the lowest fraction where the rectangle path stops
    winning, interpolated).
    """
    import torch.nn.functional as F

    from cnnviz_widgets.inspect.incremental.gather import Rows

    torch.manual_seed(0)
    for c, hw in [(64, 56), (128, 28), (256, 14)]:
        w = torch.randn(c, c, 3, 3, device=device) * 0.05
        base = torch.randn(1, c, hw, hw, device=device)
        rows_pad = Rows(base, (1, 1, 1, 1), 0.0)
        rows = Rows(base, (0, 0, 0, 0), 0.0)
        oy = torch.randint(0, 1, (batch,), device=device)
        ratios = {}
        sizes = sorted({max(3, round(hw * f**0.5)) for f in (0.2, 0.35, 0.5, 0.65, 0.8, 0.9)})
        for r in sizes:
            if r > hw:
                continue
            ih = r - 2
            upd = torch.randn(batch, c, ih, ih, device=device)
            off = torch.full((batch,), max(0, (hw - r) // 2), device=device)
            off = off + oy

            def rect(upd=upd, off=off, r=r, w=w, rows_pad=rows_pad):
                win = rows_pad.gather(upd, off + 1, off + 1, off, off, r + 2, r + 2)
                return F.conv2d(win, w)

            def full(upd=upd, off=off, w=w, rows=rows):
                x = rows.materialize(upd, off + 1, off + 1, batch)
                return F.conv2d(x, w, padding=1)

            rect()
            full()
            tr, tf = [], []
            for _ in range(repeats):
                tr.append(timed(rect)[0])
                tf.append(timed(full)[0])
            ratios[round(r * r / (hw * hw), 3)] = round(
                statistics.median(tr) / statistics.median(tf), 3
            )
        cross = None
        items = sorted(ratios.items())
        for (f0, q0), (f1, q1) in itertools.pairwise(items):
            if q0 < 1.0 <= q1:
                cross = round(f0 + (1.0 - q0) * (f1 - f0) / (q1 - q0), 3)
                break
        if cross is None and items and items[-1][1] < 1.0:
            cross = 1.0
        print(
            json.dumps(
                {
                    "measure": "full_threshold",
                    "device": device.type,
                    "channels": c,
                    "map": hw,
                    "batch": batch,
                    "rect_over_full_time_by_fraction": ratios,
                    "crossover_fraction": cross,
                    "threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--model",
        nargs="+",
        default=["resnet18"],
        choices=["demo", *TORCHVISION_MODELS, *TIMM_MODELS],
        help="one or more models, each measured in turn",
    )
    p.add_argument(
        "--placement",
        default="inside",
        choices=["inside", "centered"],
        help="ours and full; Captum always uses the inside windows",
    )
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--stride", type=int, nargs="+", default=[8])
    p.add_argument("--size", type=int, default=None, help="image side (default: 224, demo 32)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--captum-ppe", type=int, default=32, help="Captum perturbations_per_eval")
    p.add_argument("--no-captum", action="store_true")
    p.add_argument("--no-full", action="store_true")
    p.add_argument("--threshold", type=float, default=None, help="full_threshold override")
    p.add_argument(
        "--min-bound",
        type=float,
        default=None,
        help="MIN_FLOP_BOUND override (0: always incremental; to measure where it pays)",
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=None,
        help="instead of the comparison, time ours at each of these full_threshold values",
    )
    p.add_argument(
        "--measure-threshold",
        action="store_true",
        help="time rectangle vs full for single conv layers and print the crossover fraction",
    )
    args = p.parse_args(argv)
    if args.min_bound is not None:
        import cnnviz_widgets.inspect.occlusion as occlusion

        occlusion.MIN_FLOP_BOUND = args.min_bound
    if args.measure_threshold:
        measure_threshold(torch.device(args.device), args.batch_size or 64, max(args.repeats, 5))
        return

    for name in args.model:
        run_model(args, name)


def _occlusion(model, x, **kw):
    """occlusion_map, and the warnings it gave (fallbacks to full recompute)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = occlusion_map(model, x, **kw)
    return res, sorted({f"{w.category.__name__}: {w.message}"[:200] for w in caught})


def run_model(args, name: str) -> None:
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model, c, default_size = build_model(name)
    model.to(dev)
    size = args.size or default_size
    x = torch.randn(1, c, size, size, device=dev)
    with torch.inference_mode():
        target = int(model(x).argmax(1).item())

    for stride in args.stride:
        if args.thresholds:
            sweep(model, x, target, args, stride, name)
            continue
        common = dict(
            target=target,
            patch_size=args.patch,
            stride=stride,
            baseline=0.0,
            batch_size=args.batch_size,
            full_threshold=args.threshold,
            placement=args.placement,
        )
        # warm-up (oneDNN primitive caches, cuDNN autotune): one run of each, untimed
        ours_t, full_t, captum_t = [], [], []
        ours = full = None
        warm, notes = _occlusion(model, x, precision=args.precision, **common)
        for _ in range(args.repeats):
            t, ours = timed(lambda c=common: occlusion_map(model, x, precision=args.precision, **c))
            ours_t.append(t)
            if not args.no_full:
                t, full = timed(lambda c=common: occlusion_map(model, x, method="full", **c))
                full_t.append(t)
            if not args.no_captum:
                with torch.inference_mode():
                    t, _ = timed(
                        lambda s=stride: captum_run(
                            model, x, target, args.patch, s, 0.0, args.captum_ppe
                        )
                    )
                captum_t.append(t)
        if full is None:
            full = occlusion_map(model, x, method="full", **common)
        ours_s = statistics.median(ours_t)
        full_s = statistics.median(full_t) if full_t else None
        captum_s = statistics.median(captum_t) if captum_t else None
        bound = ours.extra.get("flop_bound")
        if bound is None and ours.method == "incremental":
            bound = flop_bound(
                model, x, args.patch, stride, args.threshold or DEFAULT_FULL_THRESHOLD
            )
        line = {
            "model": name,
            "device": args.device,
            "device_name": (
                torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
            ),
            "size": size,
            "patch": args.patch,
            "stride": stride,
            "placement": args.placement,
            "positions": ours.positions,
            "precision": args.precision,
            "repeats": args.repeats,
            "method": ours.method,
            "flop_bound": round(bound, 3) if bound is not None else None,
            "ours_s": round(ours_s, 4),
            "full_s": round(full_s, 4) if full_s else None,
            "captum_s": round(captum_s, 4) if captum_s else None,
            "speedup_vs_captum": round(captum_s / ours_s, 3) if captum_s else None,
            "speedup_vs_full": round(full_s / ours_s, 3) if full_s else None,
            # min-over-runs ratios: less sensitive to load from other processes than medians
            "speedup_vs_captum_best": round(min(captum_t) / min(ours_t), 3) if captum_t else None,
            "speedup_vs_full_best": round(min(full_t) / min(ours_t), 3) if full_t else None,
            "max_abs_diff": float(abs(ours.scores - full.scores).max()),
            "precision_error": ours.precision_error,
            "batch_size": ours.batch_size,
            "full_threshold": args.threshold or DEFAULT_FULL_THRESHOLD,
            "min_flop_bound": args.min_bound,
            "warnings": notes,
            "ours_runs": [round(t, 3) for t in ours_t],
            "full_runs": [round(t, 3) for t in full_t],
            "captum_runs": [round(t, 3) for t in captum_t],
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
        del warm
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
