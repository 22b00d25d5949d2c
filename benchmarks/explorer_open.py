"""CNNExplorer opening on a dataset: time to return, to the first scatter, to the final t-SNE.

    python benchmarks/explorer_open.py [--n 1797 17970] [--repeats 3] [--method tsne]
        [--demo digits|photos] [--against PATH]

Each run is a fresh Python process (no cache hit), on a demo repeated to `n` images: `digits`
(the digits CNN: the pass is cheap, so t-SNE and the views dominate, as for any model once its
features are in) or `photos` (EfficientNet-Lite0 on the photos at 224x224: the model's own
analysis, trace and forwards count). `--against PATH` runs the background explorer of another
checkout of this repository too (a `git worktree` of an older commit), interleaved, and reports
its medians as `against_*`. Kernel-free: traits are set from the worker thread, and an
observer stamps them (one clock, `time.perf_counter`):
  - open_s: `CNNExplorer(...)` returned (the default, background: target < 1 s on any dataset);
  - first_points_s: the first scatter (a preview of the images read so far, or the first PCA);
  - all_points_s: the PCA of every image (the pass is done);
  - final_s: `wait()` returned: the t-SNE final, the top patches ranked, the occlusion map done;
  - blocking_open_s, the peer: `CNNExplorer(..., background=False)`, which returns only after
    the pass (as every version before this one did);
  - peak_rss_mb: the process's peak resident memory (ru_maxrss), for N and 10N.
Prints one JSON line per (n, mode): medians of `--repeats` runs, with min and max.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUN = r"""
import json, resource, sys, time
t_import = time.perf_counter()
import torch
from cnnviz_widgets import CNNExplorer
from cnnviz_widgets.demo import load_demo

n, method, background, demo = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4]
if demo == "photos":
    from cnnviz_widgets.demo import load_photos

    model, digits, classes = load_photos()
else:
    model, digits, classes = load_demo(split="all")


class Many(torch.utils.data.Dataset):
    def __len__(self):
        return n

    def __getitem__(self, i):
        return digits[i % len(digits)]


stamps = {}
t0 = time.perf_counter()
x = CNNExplorer(model, Many(), classes=classes, method=method, background=background)
stamps["open_s"] = time.perf_counter() - t0


def on_points(change):
    now = time.perf_counter() - t0
    stamps.setdefault("first_points_s", now)
    if len(change["new"]) == 8 * n:
        stamps.setdefault("all_points_s", now)


x.embedding.observe(on_points, names=["points"])
if x.embedding.points:  # blocking mode: drawn before it returned
    on_points({"new": x.embedding.points})
x.wait(3600)
stamps["final_s"] = time.perf_counter() - t0
stamps["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
x.close()
print(json.dumps(stamps))
"""


def run(n: int, method: str, background: bool, demo: str, repo: Path = REPO) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(n), method, "1" if background else "0", demo],
        capture_output=True, text=True, check=True, env=env, cwd=repo,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    keys = sorted({k for r in runs for k in r})
    out = {}
    for k in keys:
        values = [r[k] for r in runs if k in r]
        out[k] = round(statistics.median(values), 3)
        out[k + "_range"] = [round(min(values), 3), round(max(values), 3)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1797, 17970])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--method", default="tsne", choices=["tsne", "pca"])
    p.add_argument("--demo", default="digits", choices=["digits", "photos"])
    p.add_argument("--against", type=Path, help="another checkout, run in background mode too")
    args = p.parse_args()
    for n in args.n:
        runs = {True: [], False: [], "against": []}
        for _ in range(args.repeats):  # interleaved: load from elsewhere hits all alike
            for background in (True, False):
                runs[background].append(run(n, args.method, background, args.demo))
            if args.against is not None:
                runs["against"].append(run(n, args.method, True, args.demo, args.against))
        fast, blocking = summary(runs[True]), summary(runs[False])
        against = summary(runs["against"]) if runs["against"] else {}
        line = {
            "n": n,
            "demo": args.demo,
            "method": args.method,
            "repeats": args.repeats,
            **fast,
            "blocking_open_s": blocking["open_s"],
            "blocking_final_s": blocking["final_s"],
            "blocking_peak_rss_mb": blocking["peak_rss_mb"],
            "open_speedup_vs_blocking": round(blocking["open_s"] / max(fast["open_s"], 1e-9), 1),
            **{f"against_{k}": v for k, v in against.items() if not k.endswith("_range")},
            "cpus": os.cpu_count(),
            "load": round(os.getloadavg()[0], 2),
            "machine": platform.machine(),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
