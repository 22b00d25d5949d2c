"""Occlusion at the explorer's defaults: time to the first and the final map, in forwards.

    python benchmarks/occlusion_latency.py --photos 5 --repeats 3
    python benchmarks/occlusion_latency.py --model lite0 --photos 2 --repeats 1  # smoke run

What runs is what a click in ``CNNExplorer`` runs: the explorer passes ``occlusion=None`` to
``OcclusionMap``, so its defaults (patch ``default_patch`` = 32 px at 224x224, stride
patch // 4 = 8, the coarse-to-fine schedule ``coarse_to_fine`` = strides 64, 32, 16, 8 at
224², centred patches, the predicted class, baseline 0, probability). For each model an
``OcclusionMap`` is built on the first photo and its settings are read from it
(``schedule()``, ``patch_size``, ... and its traced graph, ``_graph``, shared by the model's
widgets); each click is then what ``OcclusionMap._on_image`` and ``_run`` do: the predicted
class (one forward, whose output the run's base pass reuses: ``base_output``), then the pure
iterator ``occlusion_maps(model, image, strides=..., traced=...)``, timed to its
first (coarsest) and its last (finest) map, after one untimed click. The finest map of the
first photo is checked against the widget's own.

Models: EfficientNet-Lite0 with its ImageNet weights on the shipped photos (``load_photos()``),
and torchvision ResNet-18 (``weights=None``: the cost does not depend on the weights) on the same
photos (224x224) normalised with ImageNet's mean and std. Photos: ``--photos`` evenly spread
over the dataset. In each repeat: every photo's click, then the plain forward at batch 1, 8
and 32, then the peers on one photo (the next one each repeat; their cost does not depend on
the photo): the full recompute (``occlusion_map(..., method="full", batch_size=b)``) and Captum
``Occlusion`` (``perturbations_per_eval=b``, on ``softmax(model(x))``) of the final map, each
at every ``b`` of ``--peer-batches`` (default: the plain forward's best batch), reported at its
fastest. Captum slides its patches inside the image (``placement="inside"``), so it computes
fewer positions than the centred final map (``captum_positions``).

One JSON line per model (medians over photos x repeats for ours, over repeats otherwise):
``first_s`` click to the first map (includes the predicted-class forward, ``predict_s``);
``final_s`` click to the final map (the whole schedule); ``forward_s_per_image`` a plain
``model(x)`` forward's seconds per image (median of 3 calls per repeat) at
``forward_best_batch``, the fastest of ``forward_s_by_batch``; ``final_forwards`` = final_s /
forward_s_per_image, the final map's cost in single-image forward passes; ``full_s`` /
``captum_s`` the peers' final map at their best batch (``full_best_batch``,
``captum_best_ppe``; all batches in ``*_by_batch``), ``full_forwards`` / ``captum_forwards``
the same in forwards, ``speedup_vs_full`` / ``speedup_vs_captum`` = peer / final_s;
``first_ok`` (first_s <= 0.5 s) and ``final_ok`` (final_forwards <= 250), the targets;
``trace_s`` the one-off trace of the model's graph (the first click on a model pays it, later
ones reuse it); ``widget_max_abs_diff`` the finest map here vs the widget's; ``methods`` the
path each map took, ``flop_bounds`` their bound; ``*_runs`` every sample. Then a short table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from occlusion import captum_run, timed  # benchmarks/occlusion.py

from cnnviz_widgets.inspect.incremental import trace
from cnnviz_widgets.inspect.occlusion import occlusion_map, occlusion_maps
from cnnviz_widgets.inspect.predict import (
    class_probabilities,
    model_output,
    pick_scores,
    probabilities_of,
)
from cnnviz_widgets.inspect.view import eval_view
from cnnviz_widgets.widgets.occlusion import OcclusionMap

MODELS = ("lite0", "resnet18")
FORWARD_BATCHES = (1, 8, 32)
TARGET_FIRST_S = 0.5
TARGET_FORWARDS = 250
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load(name: str, count: int) -> tuple[torch.nn.Module, list[torch.Tensor], list[int]]:
    """(model, photos as its (1, 3, 224, 224) inputs, their dataset indices)."""
    from cnnviz_widgets.demo import load_photos

    lite0, dataset, _ = load_photos()
    indices = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()
    photos = [dataset[i][0] for i in indices]  # Lite0's input: 224x224, mean = std = 0.5
    if name == "lite0":
        return lite0, [p[None] for p in photos], indices
    import torchvision

    model = torchvision.models.resnet18(weights=None).eval()
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    return model, [((dataset.denormalize(p) - mean) / std)[None] for p in photos], indices


def widget_settings(model, image) -> tuple[dict, np.ndarray]:
    """What `OcclusionMap(model, image)` hands to `occlusion_maps` (as `_start` and `_run`
    build it), and the finest map of its own run (which is the warm-up)."""
    widget = OcclusionMap(model, image[0])
    try:
        final = widget.wait(timeout=None)
        batch = widget._batch(image[0])
        settings = {
            "strides": widget.schedule(),
            "patch_size": widget.patch_size,
            "baseline": widget.baseline,
            "output": widget.output,
            "method": widget._method,
            "traced": widget._graph(batch),
            "device": widget._device,
        }
    finally:
        widget.close()
    return settings, final.scores


def click(model, image, settings: dict) -> dict:
    """One click: the predicted class, then the coarse-to-fine maps, whose base pass reuses
    that forward (as ``OcclusionMap._on_image`` and ``_start`` do); times from the click."""
    t0 = time.perf_counter()
    logits = pick_scores(model_output(model, image))
    target = int(np.argmax(probabilities_of(logits)))
    predict = time.perf_counter() - t0
    maps = occlusion_maps(model, image, target=target, base_output=logits, **settings)
    results = [next(maps)]
    first = time.perf_counter() - t0
    results += list(maps)
    final = time.perf_counter() - t0
    return {"predict": predict, "first": first, "final": final, "results": results}


def forward_times(model, image) -> dict[int, float]:
    """Seconds per image of a plain batched forward (median of 3), at each FORWARD_BATCHES."""
    out = {}
    with torch.inference_mode():
        for b in FORWARD_BATCHES:
            x = image.expand(b, *image.shape[1:]).contiguous()
            model(x)  # warm (oneDNN primitives for this shape)
            out[b] = statistics.median(timed(lambda x=x: model(x))[0] for _ in range(3)) / b
    return out


def peer_times(model, image, target: int, settings: dict, batches) -> dict:
    """{("full", b): s, ("captum", b): s}: the final map by the peers, at each batch."""
    patch, stride = settings["patch_size"], settings["strides"][-1]
    kw = dict(target=target, patch_size=patch, stride=stride, baseline=settings["baseline"])
    out = {}
    for b in batches:
        out[("full", b)] = timed(
            lambda b=b: occlusion_map(model, image, method="full", batch_size=b, **kw)
        )[0]
        with torch.inference_mode():
            out[("captum", b)] = timed(
                lambda b=b: captum_run(model, image, target, patch, stride, 0.0, b)
            )[0]
    return out


def measure(name: str, args) -> dict:
    """All repeats for one model: clicks on every photo, forwards, peers on one photo."""
    model, images, indices = load(name, args.photos)
    t = time.perf_counter()
    trace(eval_view(model), images[0])
    trace_s = time.perf_counter() - t
    settings, widget_scores = widget_settings(model, images[0])
    click(model, images[0], settings)  # warm-up on this thread (the widget's ran on its own)
    samples = {"clicks": [], "forward": [], "peers": []}
    batches = args.peer_batches  # else the forward's best batch of the first repeat, kept
    for r in range(args.repeats):
        for image in images:
            samples["clicks"].append(click(model, image, settings))
        fwd = forward_times(model, images[0])
        samples["forward"].append(fwd)
        batches = batches or [min(fwd, key=fwd.get)]
        image = images[r % len(images)]
        target = int(np.argmax(class_probabilities(model, image)))
        samples["peers"].append(peer_times(model, image, target, settings, batches))
    first_final = samples["clicks"][0]["results"][-1].scores
    diff = float(np.abs(first_final - widget_scores).max())
    return summarise(name, indices, settings, samples, trace_s, diff)


def _median_by(dicts: list[dict]) -> dict:
    return {k: statistics.median(d[k] for d in dicts) for k in dicts[0]}


def _best(peers: dict, kind: str) -> tuple[object, float | None, dict]:
    by = {b: s for (k, b), s in peers.items() if k == kind}
    if not by:
        return None, None, {}
    b = min(by, key=by.get)
    return b, by[b], {str(k): round(v, 4) for k, v in by.items()}


def _r(v, nd=4):
    return None if v is None else round(v, nd)


def summarise(name, indices, settings, samples, trace_s, diff) -> dict:
    clicks = samples["clicks"]
    first = statistics.median(c["first"] for c in clicks)
    final = statistics.median(c["final"] for c in clicks)
    fwd_by = _median_by(samples["forward"])
    fwd_b = min(fwd_by, key=fwd_by.get)
    fwd = fwd_by[fwd_b]
    peers = _median_by(samples["peers"])
    full_b, full_s, full_by = _best(peers, "full")
    captum_b, captum_s, captum_by = _best(peers, "captum")
    results = clicks[0]["results"]
    h, w = results[-1].image_size
    p, s = settings["patch_size"], settings["strides"][-1]
    return {
        "bench": "occlusion_latency",
        "model": name,
        "photos": indices,
        "repeats": len(samples["forward"]),
        "patch": p,
        "strides": settings["strides"],
        "positions": [r.positions for r in results],
        "captum_positions": len(range(0, h - p + s, s)) * len(range(0, w - p + s, s)),
        "methods": [r.method for r in results],
        "flop_bounds": [_r(r.extra.get("flop_bound"), 3) for r in results],
        "first_s": _r(first),
        "final_s": _r(final),
        "predict_s": _r(statistics.median(c["predict"] for c in clicks)),
        "forward_s_per_image": _r(fwd, 5),
        "forward_best_batch": fwd_b,
        "forward_s_by_batch": {str(b): _r(v, 5) for b, v in fwd_by.items()},
        "final_forwards": _r(final / fwd, 1),
        "full_s": _r(full_s),
        "full_best_batch": full_b,
        "full_s_by_batch": full_by,
        "full_forwards": _r(full_s and full_s / fwd, 1),
        "captum_s": _r(captum_s),
        "captum_best_ppe": captum_b,
        "captum_s_by_ppe": captum_by,
        "captum_forwards": _r(captum_s and captum_s / fwd, 1),
        "speedup_vs_full": _r(full_s and full_s / final, 3),
        "speedup_vs_captum": _r(captum_s and captum_s / final, 3),
        "first_ok": first <= TARGET_FIRST_S,
        "final_ok": final / fwd <= TARGET_FORWARDS,
        "trace_s": _r(trace_s),
        "widget_max_abs_diff": diff,
        "first_runs": [round(c["first"], 3) for c in clicks],
        "final_runs": [round(c["final"], 3) for c in clicks],
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def table(lines: list[dict]) -> str:
    head = (
        "| model | first map s | final map s | final in forwards | full s (fwd, batch) | "
        "Captum s (fwd, ppe) | vs full | vs Captum |\n|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {d['model']} | {d['first_s']} ({'ok' if d['first_ok'] else 'over 0.5'}) | "
        f"{d['final_s']} | {d['final_forwards']} ({'ok' if d['final_ok'] else 'over 250'}) | "
        f"{d['full_s']} ({d['full_forwards']}, {d['full_best_batch']}) | "
        f"{d['captum_s']} ({d['captum_forwards']}, {d['captum_best_ppe']}) | "
        f"{d['speedup_vs_full']}x | {d['speedup_vs_captum']}x |"
        for d in lines
    ]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--photos", type=int, default=5, help="photos, evenly spread")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--peer-batches",
        type=int,
        nargs="+",
        default=None,
        help="batches of the full recompute and Captum ppe (default: the forward's best)",
    )
    args = p.parse_args(argv)
    lines = []
    for name in args.model:
        lines.append(measure(name, args))
        print(json.dumps(lines[-1]), flush=True)
    print(table(lines))


if __name__ == "__main__":
    main()
