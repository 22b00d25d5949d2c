"""Peak memory of a feature pass (`feature_pass`) at N = 5k, 50k and 100k small images.

    python benchmarks/dataset_memory.py                    # 5k, 50k, 100k; in memory and mapped
    python benchmarks/dataset_memory.py --sizes 5000 50000 --modes default

Each measurement runs in a fresh subprocess: the demo CNN (`load_demo()`, penultimate 128
features) over a synthetic dataset of N 1x32x32 images made lazily per item (item i from seed
i: the dataset holds nothing, so its own memory does not grow with N), batch 256, CPU with
``--threads`` torch threads (1 by default: on a busy 2-core machine one thread ran this small
model 2.6x faster than two; memory does not depend on it), ``cache=False``. A thread samples
the process's resident memory every 5 ms during the pass.

Prints one JSON line per run (``what: "pass"``) and then one per mode (``what: "memory"``):
- ``rss_before_mb``: resident memory after a warm-up pass, before the measured one;
- ``peak_rss_added_mb``: the sampled peak above that (``ru_maxrss_mb``: the kernel's peak);
- ``peak_anon_added_mb``: the same for anonymous memory only (``RssAnon``: the heap, what
  cannot be dropped), which leaves out the pages of a memory-mapped result file;
- ``result_mb``: the bytes of the result (features + labels + predictions + confidences);
- ``mode``: ``default`` (the result in memory up to `store.MEMMAP_BYTES`, 64 MiB, else in a
  memory-mapped temporary file) or ``mapped`` (`MEMMAP_BYTES = 0`: always the file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnviz_widgets.demo import load_demo
from cnnviz_widgets.inspect.features import feature_pass


class LazyImages(Dataset):
    """N random 1x32x32 images, item i drawn from seed i when read; labels i % 10."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randn(1, 32, 32, generator=g), i % 10


def memory_mb() -> tuple[float, float]:
    """(resident, resident anonymous) memory of this process in MiB."""
    rss = anon = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1]) / 1024
    return rss, anon


def machine() -> dict:
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def child(n: int, mode: str, batch_size: int, threads: int) -> dict:
    """One pass over n images in this process; its peak memory above the state before it."""
    torch.set_num_threads(threads)
    if mode == "mapped":
        from cnnviz_widgets.inspect import store

        store.MEMMAP_BYTES = 0
    model, _, _ = load_demo()
    feature_pass(model, LazyImages(1024), progress=False, cache=False, batch_size=batch_size)
    rss0, anon0 = memory_mb()
    peak = [rss0, anon0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, anon = memory_mb()
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], anon)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    result = feature_pass(model, LazyImages(n), progress=False, cache=False, batch_size=batch_size)
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    rss, anon = memory_mb()
    peak = [max(peak[0], rss), max(peak[1], anon)]
    arrays = (result.features, result.labels, result.predictions, result.confidences)
    return {
        "bench": "dataset_memory",
        "what": "pass",
        "model": "demo DigitsCNN (penultimate 128)",
        "image": [1, 32, 32],
        "n": n,
        "mode": mode,
        "batch_size": batch_size,
        "rss_before_mb": round(rss0, 1),
        "peak_rss_mb": round(peak[0], 1),
        "peak_rss_added_mb": round(peak[0] - rss0, 1),
        "peak_anon_added_mb": round(peak[1] - anon0, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "result_mb": round(sum(a.nbytes for a in arrays if a is not None) / 2**20, 1),
        "seconds": round(seconds, 1),
        **machine(),
    }


def run(n: int, mode: str, batch_size: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--modes", mode]
    cmd += ["--batch-size", str(batch_size), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the run at N={n} ({mode}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000, 100000])
    p.add_argument("--modes", nargs="+", default=["default", "mapped"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        line = child(args.child, args.modes[0], args.batch_size, args.threads)
        print(json.dumps(line), flush=True)
        return
    for mode in args.modes:
        runs = []
        for n in args.sizes:
            runs.append(run(n, mode, args.batch_size, args.threads))
            print(json.dumps(runs[-1]), flush=True)
        first, last = runs[0], runs[-1]
        summary = {
            "bench": "dataset_memory",
            "what": "memory",
            "mode": mode,
            "n": [r["n"] for r in runs],
            "peak_rss_added_mb": [r["peak_rss_added_mb"] for r in runs],
            "peak_anon_added_mb": [r["peak_anon_added_mb"] for r in runs],
            "result_mb": [r["result_mb"] for r in runs],
            "growth_rss_mb": round(last["peak_rss_added_mb"] - first["peak_rss_added_mb"], 1),
            "growth_result_mb": round(last["result_mb"] - first["result_mb"], 1),
            **machine(),
            "threads": args.threads,  # the passes' (this process's own may differ)
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
