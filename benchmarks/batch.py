"""The batch job (`cnnviz_widgets.batch`): images/s in-process vs Ray, and opening a store.

    python benchmarks/batch.py                               # both parts, default sizes
    python benchmarks/batch.py --part throughput --repeat 4  # the demo digits x 4
    python benchmarks/batch.py --part open --rows 10000 100000 1000000

Throughput (``what: "throughput"``): the demo CNN over the demo digits (all 1,797, repeated
``--repeat`` times), the widgets' pass (features + top-k of conv2 and relu3, k=9; batch 256,
blocks of 1,024) four ways, after one warm-up pass of 1,024 images: `dataset_pass` in this
process (the widgets' own pass, no store), `run_batch(engine="local")`, and
`run_batch(engine="ray")` with 1 and 2 workers (one CPU each) on a local cluster started
before the clock (`ray_init_s` says how long that took); a Ray run includes its actors' start
(importing torch, building the model and data, fingerprints). The store is written to a
temporary folder and removed.
``images_per_s`` = images / ``seconds``. Runs without Ray installed report the in-process ones.

Open (``what: "open"``): a synthetic store of N rows of 128 float32 features (plus labels,
predictions, confidences; random, written in chunks), opened in a fresh subprocess:
``open_ms`` for `open_store`, ``rss_added_mb`` / ``anon_added_mb`` the resident / anonymous
memory it added; ``scan_ms`` for a full pass over the features in chunks of 65,536 rows
(`features[i:j].sum()`), ``scan_rss_added_mb`` the resident memory that added (the mapped
file's pages: the page cache's, dropped under pressure) and ``scan_anon_added_mb`` the
anonymous memory (the process's own: flat in N). The store was just written, so its pages are
likely cached: the scan reads memory, not disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnviz_widgets.batch import open_store, run_batch
from cnnviz_widgets.batch.layout import FORMAT, MANIFEST, VERSION, write_json
from cnnviz_widgets.demo import load_demo
from cnnviz_widgets.inspect.dataset import FeatureConsumer, TopKConsumer, dataset_pass

LAYERS = ["conv2", "relu3"]


class Repeated(Dataset):
    """The demo digits (all 1,797) repeated `times` times."""

    def __init__(self, times: int):
        self.inner, self.times = load_demo(split="all")[1], times

    def __len__(self) -> int:
        return len(self.inner) * self.times

    def __getitem__(self, i: int):
        return self.inner[i % len(self.inner)]


def model_factory():
    return load_demo()[0]


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def emit(record: dict) -> None:
    print(json.dumps({**record, **machine()}), flush=True)


def throughput(repeat: int) -> None:
    data_factory = partial(Repeated, repeat)  # a factory Ray's workers can call
    model, data = model_factory(), data_factory()
    n = len(data)
    warm = [FeatureConsumer(model), TopKConsumer(model, LAYERS, 9)]
    dataset_pass(model, Subset(data, range(1024)), warm, batch_size=256, progress=False)
    began = time.perf_counter()
    consumers = [FeatureConsumer(model), TopKConsumer(model, LAYERS, 9)]
    dataset_pass(model, data, consumers, batch_size=256, progress=False)
    seconds = time.perf_counter() - began
    emit({"what": "throughput", "how": "dataset_pass", "images": n, "seconds": round(seconds, 2),
          "images_per_s": round(n / seconds)})  # fmt: skip
    runs = [("local", 1)]
    try:
        import ray

        began = time.perf_counter()
        ray.init(include_dashboard=False)
        ray_init = round(time.perf_counter() - began, 2)
        runs += [("ray", 1), ("ray", 2)]
    except ImportError:
        ray_init = None
    for engine, workers in runs:
        out = Path(tempfile.mkdtemp(prefix="cnnviz-batch-bench-"))
        try:
            began = time.perf_counter()
            run = run_batch(
                model_factory, data_factory, out, LAYERS, 9, batch_size=256, block_size=1024,
                engine=engine, workers=workers, progress=False,
            )  # fmt: skip
            seconds = time.perf_counter() - began
        finally:
            shutil.rmtree(out, ignore_errors=True)
        emit({"what": "throughput", "how": f"run_batch {engine}", "workers": workers,
              "images": n, "blocks": run.computed, "seconds": round(seconds, 2),
              "images_per_s": round(n / seconds), "ray_init_s": ray_init})  # fmt: skip


def synthetic_store(out: Path, rows: int, dim: int = 128, chunk: int = 65_536) -> None:
    """A complete store of `rows` random rows and no top-k layers, written in chunks."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    columns = {"features": (np.float32, (dim,)), "labels": (np.int64, ()),
               "predictions": (np.int64, ()), "confidences": (np.float32, ())}  # fmt: skip
    entries = {}
    for name, (dtype, shape) in columns.items():
        array = np.lib.format.open_memmap(
            out / f"{name}.npy", mode="w+", dtype=dtype, shape=(rows, *shape)
        )
        for start in range(0, rows, chunk):
            stop = min(start + chunk, rows)
            array[start:stop] = rng.random((stop - start, *shape)) * 10
        array.flush()
        entries[name] = {
            "file": f"{name}.npy",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
        del array
    manifest = {
        "format": FORMAT, "version": VERSION, "complete": True, "key": "synthetic",
        "model": {"fingerprint": "synthetic", "type": "none"},
        "data": {"fingerprint": "synthetic", "type": "none", "length": rows,
                 "image_size": [32, 32], "channels": 1, "classes": None},
        "job": {"k": 9}, "blocks": {"size": 1024, "count": -(-rows // 1024)},
        "rows": entries, "features": {"layer": "fc", "from_input": True, "pooled": False},
        "top": {},
    }  # fmt: skip
    write_json(out / MANIFEST, manifest)


def memory_mb() -> tuple[float, float]:
    rss = anon = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1]) / 1024
    return rss, anon


def open_child(path: str) -> None:
    """In a fresh process: open the store, then scan its features; print one JSON object."""
    rss0, anon0 = memory_mb()
    began = time.perf_counter()
    store = open_store(path)
    open_ms = (time.perf_counter() - began) * 1000
    rss1, anon1 = memory_mb()
    began = time.perf_counter()
    total = 0.0
    for start in range(0, len(store), 65_536):
        total += float(store.features[start : start + 65_536].sum())
    scan_ms = (time.perf_counter() - began) * 1000
    rss2, anon2 = memory_mb()
    print(json.dumps({
        "open_ms": round(open_ms, 2), "rss_added_mb": round(rss1 - rss0, 2),
        "anon_added_mb": round(anon1 - anon0, 2), "scan_ms": round(scan_ms),
        "scan_rss_added_mb": round(rss2 - rss0, 2), "scan_anon_added_mb": round(anon2 - anon0, 2),
    }))  # fmt: skip


def open_times(sizes: list[int]) -> None:
    for rows in sizes:
        out = Path(tempfile.mkdtemp(prefix="cnnviz-store-bench-"))
        try:
            synthetic_store(out, rows)
            size_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
            child = subprocess.run(
                [sys.executable, __file__, "--child-open", str(out)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            found = json.loads(child.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(out, ignore_errors=True)
        emit({"what": "open", "rows": rows, "store_mb": round(size_mb, 1), **found})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["throughput", "open", "both"], default="both")
    p.add_argument("--repeat", type=int, default=4, help="demo digits repeated (throughput)")
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--child-open", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_open:
        open_child(args.child_open)
        return
    if args.part in ("throughput", "both"):
        throughput(args.repeat)
    if args.part in ("open", "both"):
        open_times(args.rows)


if __name__ == "__main__":
    main()
