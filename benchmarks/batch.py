"""The batch job (`cnnviz_widgets.batch`): images/s in-process vs Ray, and opening a store.

    python benchmarks/batch.py                               # both parts, default sizes
    python benchmarks/batch.py --part throughput --repeat 4  # the demo digits x 4
    python benchmarks/batch.py --part open --rows 10000 100000 1000000
    python benchmarks/batch.py --part open --explorer   # and CNNExplorer opening each store

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

With ``--explorer`` each synthetic store also carries the top-9 of relu3 of a real store of
the demo digits, and the fingerprints of the demo model and of the digits repeated to N items,
and the child opens ``CNNExplorer(model, data, store=..., method="pca")`` on it:
``explorer_open_s`` until it returns (the views drawn from it at once), ``explorer_map_s``
until its PCA map and top patches are shown (`wait()`), with the memory each added.
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
from cnnviz_widgets.inspect.fingerprint import data_fingerprint

LAYERS = ["conv2", "relu3"]
EXPLORER = "--explorer"


class Repeated(Dataset):
    """The demo digits (all 1,797) repeated `times` times (or to `length` items)."""

    def __init__(self, times: int = 1, length: int | None = None):
        self.inner = load_demo(split="all")[1]
        self.length = len(self.inner) * times if length is None else length

    def __len__(self) -> int:
        return self.length

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


def synthetic_store(
    out: Path, rows: int, dim: int = 128, chunk: int = 65_536, real: dict | None = None
) -> None:
    """A complete store of `rows` random rows and no top-k layers, written in chunks; with
    `real` (a real store's manifest and folder), one the explorer opens: that store's top-k
    (of the first 1,797 images) and the demo model's and `Repeated(length=rows)`'s
    fingerprints."""
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
    if real is not None:
        shutil.copytree(real["path"] / "top", out / "top")
        manifest["top"], manifest["job"] = real["manifest"]["top"], real["manifest"]["job"]
        manifest["model"] = real["manifest"]["model"]
        manifest["data"] = {**real["manifest"]["data"], "length": rows,
                            "fingerprint": data_fingerprint(Repeated(length=rows))}  # fmt: skip
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
    found = explorer_open(path, len(store)) if EXPLORER in sys.argv else {}
    print(json.dumps({
        **found,
        "open_ms": round(open_ms, 2), "rss_added_mb": round(rss1 - rss0, 2),
        "anon_added_mb": round(anon1 - anon0, 2), "scan_ms": round(scan_ms),
        "scan_rss_added_mb": round(rss2 - rss0, 2), "scan_anon_added_mb": round(anon2 - anon0, 2),
    }))  # fmt: skip


def explorer_open(path: str, rows: int) -> dict:
    """CNNExplorer on the store (PCA map): seconds until it returns, and until its map and
    top patches are shown; the resident and anonymous memory each step added."""
    from cnnviz_widgets import CNNExplorer

    model, data = load_demo()[0], Repeated(length=rows)
    model(data[0][0][None])  # torch's first forward (its start-up) is not the explorer's
    rss0, anon0 = memory_mb()
    began = time.perf_counter()
    x = CNNExplorer(model, data, store=path, method="pca", progress=False)
    opened = time.perf_counter() - began
    rss1, anon1 = memory_mb()
    x.wait(600)
    shown = time.perf_counter() - began
    rss2, anon2 = memory_mb()
    x.close()
    return {"explorer_open_s": round(opened, 3), "explorer_map_s": round(shown, 2),
            "explorer_rss_added_mb": round(rss1 - rss0, 1),
            "explorer_anon_added_mb": round(anon1 - anon0, 1),
            "map_rss_added_mb": round(rss2 - rss0, 1),
            "map_anon_added_mb": round(anon2 - anon0, 1)}  # fmt: skip


def real_store(out: Path) -> dict:
    """A store of the demo digits (top-9 of relu3) made by the batch job: its top-k and
    fingerprints go into the synthetic stores the explorer opens."""
    run_batch(model_factory, partial(Repeated, 1), out, ["relu3"], 9, engine="local",
              progress=False)  # fmt: skip
    return {"path": out, "manifest": json.loads((out / MANIFEST).read_text())}


def open_times(sizes: list[int], explorer: bool = False) -> None:
    real = real_store(Path(tempfile.mkdtemp(prefix="cnnviz-real-"))) if explorer else None
    for rows in sizes:
        out = Path(tempfile.mkdtemp(prefix="cnnviz-store-bench-"))
        try:
            synthetic_store(out, rows, real=real)
            size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
            child = subprocess.run(
                [sys.executable, __file__, "--child-open", str(out)]
                + ([EXPLORER] if explorer else []),
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
    p.add_argument(EXPLORER, action="store_true", help="open: also CNNExplorer on each store")
    args = p.parse_args()
    if args.child_open:
        open_child(args.child_open)
        return
    if args.part in ("throughput", "both"):
        throughput(args.repeat)
    if args.part in ("open", "both"):
        open_times(args.rows, args.explorer)


if __name__ == "__main__":
    main()
