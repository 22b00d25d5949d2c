"""Occlusion benchmark: incremental vs full recompute vs Captum ``Occlusion``.

    python benchmarks/occlusion.py --device cpu --model resnet18 --patch 16 --stride 8
    python benchmarks/occlusion.py --device cuda --model resnet18 --stride 1 --precision bf16
    python benchmarks/occlusion.py --model efficientnet_b0 mobilenet_v3_large convnext_tiny \
        regnet_y_400mf tf_efficientnet_lite0 --stride 8

Prints one JSON line per configuration. Every time is the median of ``--repeats`` runs in this
one process; the methods are interleaved per repeat (ours, then the full recompute at each peer
batch, then Captum at each) so that load from other processes hits them alike. Models are
torchvision's with ``weights=None`` (the weights do not change the cost), or timm's
(``TIMM_MODELS``, ``pretrained=False``); the score is the softmax probability of the predicted
class, for all three methods (Captum gets ``softmax(model(x))`` as forward). Ours runs with
``placement="inside"`` by default, Captum's windows, so all three compute the same positions.

Peers at their best batch: the full recompute (``occlusion_map(..., method="full",
batch_size=b)``) and Captum (``perturbations_per_eval=b``) each run at every ``b`` of
``--peer-batches`` (CPU default 8 32 128; on CUDA, unless given, the full recompute's own pick,
sized from free memory, and Captum at ``--captum-ppe``, default 32); each is reported at the
batch whose median is lowest, and the ratios are against that. Ours runs at its own batch
(``--batch-size`` overrides it; it no longer applies to the full recompute).

Fields: model, device, device_name, size, patch, stride, placement, positions, precision,
repeats; ``method`` whether ours ran incrementally or chose (or fell back to) the full
recompute, and ``warnings`` why; ``ours_s`` median seconds of ours; ``full_s`` / ``captum_s``
the peer's median at its best batch, ``full_best_batch`` / ``captum_best_ppe`` that batch
("auto": the library's own pick), ``full_s_by_batch`` / ``captum_s_by_ppe`` the median at
every batch swept; ``speedup_vs_full`` / ``speedup_vs_captum`` = peer's best median / ours'
median; ``flop_bound`` is the library's own (``result.extra["flop_bound"]``: full /
incremental conv+linear MACs of the plan it ran), the bound on ``speedup_vs_full`` from
FLOPs alone, and ``flop_bound_share`` = ``speedup_vs_full / flop_bound``, the share of it
reached (above 1: the engine's batched passes beat the eager model by more than FLOPs);
``speedup_vs_*_best`` the ratio of the fastest runs (min over repeats, at the peer's best
batch), less sensitive to load; ``ours_runs`` / ``full_runs`` / ``captum_runs`` every run
(peers at their best batch); ``max_abs_diff`` ours vs the full recompute (probability);
``batch_size`` ours' batch; ``precision_error``, ``full_threshold``, ``min_flop_bound``,
``threads``, ``torch``. Lines written before the sweep (in benchmarks/RESULTS.md) ran the
peers at one batch and have no ``*_best_batch`` fields.
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
#: batches at which the peers run on CPU (`--peer-batches`); each is reported at its fastest
CPU_PEER_BATCHES = (8, 32, 128)


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
    p.add_argument("--batch-size", type=int, default=None, help="ours (default: its own pick)")
    p.add_argument(
        "--peer-batches",
        type=int,
        nargs="+",
        default=None,
        help="batches of the full recompute and Captum perturbations_per_eval to sweep; each "
        "peer is reported at its fastest (default: CPU 8 32 128; CUDA the full recompute's "
        "own pick and Captum at --captum-ppe)",
    )
    p.add_argument(
        "--captum-ppe",
        type=int,
        default=None,
        help="Captum perturbations_per_eval, only this one (default: the --peer-batches sweep)",
    )
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
    if args.peer_batches is None and args.device == "cpu":
        args.peer_batches = list(CPU_PEER_BATCHES)
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
            full_threshold=args.threshold,
            placement=args.placement,
        )
        line = compare(model, x, target, args, stride, common)
        print(json.dumps({"model": name, **line}), flush=True)


def peer_batches(args) -> tuple[list, list]:
    """(batches of the full recompute, Captum perturbations_per_eval values) to sweep; None is
    the library's own pick for the full recompute (CUDA: sized from free memory)."""
    full = [] if args.no_full else (args.peer_batches or [None])
    if args.no_captum:
        return full, []
    return full, [args.captum_ppe] if args.captum_ppe else (args.peer_batches or [32])


def warm_up(model, x, batches) -> None:
    """One plain forward at each peer batch size (oneDNN primitive caches, cuDNN autotune)."""
    with torch.inference_mode():
        for b in sorted({b for b in batches if b}):
            model(x.expand(b, *x.shape[1:]).contiguous())


def time_methods(model, x, target, args, stride, common):
    """{("ours", None): [s, ...], ("full", b): [...], ("captum", b): [...]}, the methods
    interleaved in each repeat; the last result of ours and of the full recompute."""
    full_b, captum_b = peer_batches(args)
    warm_up(model, x, full_b + captum_b)
    times = {
        ("ours", None): [],
        **{("full", b): [] for b in full_b},
        **{("captum", b): [] for b in captum_b},
    }
    ours = full = None
    for _ in range(args.repeats):
        t, ours = timed(
            lambda: occlusion_map(
                model, x, precision=args.precision, batch_size=args.batch_size, **common
            )
        )
        times[("ours", None)].append(t)
        for b in full_b:
            t, full = timed(
                lambda b=b: occlusion_map(model, x, method="full", batch_size=b, **common)
            )
            times[("full", b)].append(t)
        for b in captum_b:
            with torch.inference_mode():
                t, _ = timed(lambda b=b: captum_run(model, x, target, args.patch, stride, 0.0, b))
            times[("captum", b)].append(t)
    return times, ours, full


def best_peer(times: dict, kind: str) -> tuple[object, list[float], dict]:
    """The peer's batch with the lowest median time, its runs, and every batch's median."""
    med = {key[1]: statistics.median(v) for key, v in times.items() if key[0] == kind}
    if not med:
        return None, [], {}
    b = min(med, key=med.get)
    by_batch = {"auto" if k is None else str(k): round(v, 4) for k, v in med.items()}
    return ("auto" if b is None else b), times[(kind, b)], by_batch


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


def compare(model, x, target, args, stride, common) -> dict:
    """One JSON line: ours against each peer at its best batch (see the module docstring)."""
    warm, notes = _occlusion(
        model, x, precision=args.precision, batch_size=args.batch_size, **common
    )
    del warm  # untimed warm-up of ours; `notes`: the warnings it gave
    times, ours, full = time_methods(model, x, target, args, stride, common)
    if full is None:
        full = occlusion_map(model, x, method="full", **common)
    ours_t = times[("ours", None)]
    ours_s = statistics.median(ours_t)
    full_b, full_t, full_by = best_peer(times, "full")
    captum_b, captum_t, captum_by = best_peer(times, "captum")
    full_s = statistics.median(full_t) if full_t else None
    captum_s = statistics.median(captum_t) if captum_t else None
    bound = ours.extra.get("flop_bound")
    if bound is None and ours.method == "incremental":
        bound = flop_bound(model, x, args.patch, stride, args.threshold or DEFAULT_FULL_THRESHOLD)
    vs_full = _ratio(full_s, ours_s)
    dev = x.device
    return {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor(),
        "size": x.shape[-1],
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
        "full_best_batch": full_b,
        "captum_best_ppe": captum_b,
        "full_s_by_batch": full_by,
        "captum_s_by_ppe": captum_by,
        "speedup_vs_captum": _ratio(captum_s, ours_s),
        "speedup_vs_full": vs_full,
        "flop_bound_share": round(vs_full / bound, 3) if vs_full and bound else None,
        # min-over-runs ratios at the peer's best batch: less sensitive to load than medians
        "speedup_vs_captum_best": _ratio(min(captum_t, default=None), min(ours_t)),
        "speedup_vs_full_best": _ratio(min(full_t, default=None), min(ours_t)),
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


if __name__ == "__main__":
    main()
