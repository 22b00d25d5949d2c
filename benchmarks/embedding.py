"""Representation space: feature-pass throughput and t-SNE speed/quality against peers.

    python benchmarks/embedding.py                 # everything (about 10 minutes on 2 busy cores)
    python benchmarks/embedding.py --only tsne --sizes 10000

Prints one JSON line per measurement:
- ``features``: images/s of `extract_features` (penultimate features via a hook) against a
  plain ``model(x)`` loop over the same DataLoader; ResNet-18 (weights=None) on synthetic
  images; runs interleaved, medians.
- ``tsne``: `embed(x, "tsne")` against scikit-learn's TSNE (its defaults) on the same
  synthetic clustered features (N x 512), both limited to the same number of threads, with
  the kNN (k=10) label agreement of each map. scikit-learn is skipped where its estimated
  time (from the smaller size) exceeds ``--sklearn-limit`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnnviz_widgets.inspect.embedding import (
    available_cores,
    embed,
    extract_features,
    knn_agreement,
)


def machine(threads: int) -> dict:
    return {
        "machine": platform.machine(),
        "cpus": available_cores(),
        "threads": threads,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def clustered_features(n: int, d: int = 512, classes: int = 10, seed: int = 0):
    """Synthetic penultimate-like features: 10 classes x 3 sub-clusters in a 32-d latent
    space, mapped linearly to `d` dims with noise and a ReLU. kNN(10) label agreement in the
    raw features is about 0.92, so maps can lose (or keep) neighbourhoods measurably."""
    rng = np.random.default_rng(seed)
    latent = 32
    labels = rng.integers(0, classes, n)
    sub = rng.integers(0, 3, n)
    centres = rng.normal(0, 2.0, (classes, latent))
    sub_centres = rng.normal(0, 1.0, (classes, 3, latent))
    z = centres[labels] + sub_centres[labels, sub] + rng.normal(0, 2.5, (n, latent))
    w = rng.normal(0, 1 / np.sqrt(latent), (latent, d))
    x = np.maximum(z @ w + rng.normal(0, 0.5, (n, d)), 0)
    return x.astype(np.float32), labels


# ------------------------------------------------------------ features ----


def bench_features(args) -> None:
    from torch.utils.data import DataLoader, Dataset
    from torchvision.models import resnet18

    class Synthetic(Dataset):
        """`n` images drawn from a fixed pool of 64 random ones (cheap to index)."""

        def __init__(self, n: int, size: int):
            self.pool = torch.randn(64, 3, size, size, generator=torch.Generator().manual_seed(0))
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int):
            return self.pool[i % 64], i % 10

    torch.set_num_threads(args.threads)
    model = resnet18(weights=None).eval()
    data = Synthetic(args.images, args.image_size)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False, num_workers=0)

    def plain() -> None:
        with torch.inference_mode():
            for x, _ in loader:
                model(x)

    def ours() -> None:
        extract_features(model, loader, progress=False, cache=False)

    ours()  # warm-up (allocator, hooks)
    runs = {"plain": [], "ours": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("ours", ours)):
            start = time.perf_counter()
            fn()
            runs[name].append(round(time.perf_counter() - start, 3))
    plain_s, ours_s = statistics.median(runs["plain"]), statistics.median(runs["ours"])
    emit(
        {
            "bench": "embedding",
            "what": "features",
            "model": "resnet18",
            "layer": "penultimate (input of fc)",
            "device": "cpu",
            "n": args.images,
            "image": [3, args.image_size, args.image_size],
            "batch_size": args.batch_size,
            "workers": 0,
            "repeats": args.repeats,
            "plain_img_s": round(args.images / plain_s, 2),
            "ours_img_s": round(args.images / ours_s, 2),
            "ratio": round(plain_s / ours_s, 3),
            "runs_s": runs,
            **machine(args.threads),
        }
    )


# ---------------------------------------------------------------- t-SNE ----


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(round(time.perf_counter() - start, 2))
    return result, times


def sklearn_tsne(x: np.ndarray, threads: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        return TSNE(random_state=0, n_jobs=threads).fit_transform(x)


def opentsne_defaults(x: np.ndarray, threads: int) -> np.ndarray:
    import openTSNE

    return np.asarray(openTSNE.TSNE(n_jobs=threads, random_state=0).fit(x))


def bench_tsne(args) -> None:
    sklearn_per_point = None
    for n in args.sizes:
        x, labels = clustered_features(n, args.dim)
        repeats = args.repeats if n <= 20_000 else 1
        record = {
            "bench": "embedding",
            "what": "tsne",
            "data": f"synthetic clustered features, 10 classes x 3 sub-clusters, {n}x{args.dim}",
            "n": n,
            "d": args.dim,
            "repeats_ours": repeats,
            "raw_knn10_agreement": round(knn_agreement(x, labels), 4),
        }
        t = args.threads
        ours, runs = timed(lambda x=x, t=t: embed(x, random_state=0, n_jobs=t), repeats)
        record |= {
            "ours_s": statistics.median(runs),
            "ours_runs_s": runs,
            "ours_knn10_agreement": round(knn_agreement(ours, labels), 4),
        }
        if args.auto_threads:
            auto, runs = timed(lambda x=x: embed(x, "tsne", random_state=0), 1)
            assert np.array_equal(auto, ours)  # the thread count never changes the map
            record |= {"ours_auto_threads_s": runs[0]}
        if args.opentsne_defaults and n <= 20_000:
            peer, runs = timed(lambda x=x: opentsne_defaults(x, args.threads), 1)
            record |= {
                "opentsne_defaults_s": runs[0],
                "opentsne_defaults_knn10_agreement": round(knn_agreement(peer, labels), 4),
            }
        estimate = None if sklearn_per_point is None else sklearn_per_point * n * np.log(n)
        if estimate is not None and estimate > args.sklearn_limit:
            record |= {
                "sklearn_s": None,
                "sklearn_skipped": f"estimated {estimate:.0f} s > {args.sklearn_limit} s "
                "(N log N from the smaller size)",
            }
        elif args.sklearn_repeats > 0:
            sk_repeats = args.sklearn_repeats if n <= 20_000 else 1
            peer, runs = timed(lambda x=x: sklearn_tsne(x, args.threads), sk_repeats)
            sk_s = statistics.median(runs)
            sklearn_per_point = sk_s / (n * np.log(n))
            record |= {
                "sklearn_s": sk_s,
                "sklearn_runs_s": runs,
                "sklearn_knn10_agreement": round(knn_agreement(peer, labels), 4),
                "speedup_vs_sklearn": round(sk_s / record["ours_s"], 2),
            }
        emit(record | machine(args.threads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["features", "tsne"], default=None)
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 70_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sklearn-repeats", type=int, default=3)
    parser.add_argument("--sklearn-limit", type=float, default=600.0)
    parser.add_argument("--opentsne-defaults", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--auto-threads", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if args.only in (None, "features"):
        bench_features(args)
    if args.only in (None, "tsne"):
        bench_tsne(args)


if __name__ == "__main__":
    main()
