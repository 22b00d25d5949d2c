"""Maps of many points: t-SNE of a sample with the rest placed, against t-SNE of every point.

    python benchmarks/large_map.py --threads 1 --seed-floor   # N = 100,000: both paths
    python benchmarks/large_map.py --sample 10000 25000 50000 --threads 1   # sample sizes
    python benchmarks/large_map.py --n 1000000 --no-exact --threads 1       # the sampled path

Synthetic features: a mixture of 50 Gaussian clusters in 128 dimensions (fixed seed), each
cluster spread along 2 random directions of its own (``--spread-dims``) plus a little noise
in every dimension (``--noise``), so feature space has local structure a 2-D map can keep or
lose. Prints one JSON line per map, the sampled ones first:

- ``path`` "sampled": `embed(x, sample=S)` (t-SNE of S random points, the others placed by
  openTSNE's `transform`); "exact": `embed(x, sample=0)` (t-SNE of every point: Annoy
  neighbours, FFT gradients, PCA start; the peer, same run, same threads).
- ``map_s`` wall time of `embed` (PCA included); for the sampled path ``optimise_s`` (PCA,
  the neighbour searches, the sample's t-SNE) and ``place_s`` (the placement), split at the
  callback that shows the sample's final map.
- ``feature_knn10`` mean share of a point's 10 nearest map neighbours that are among its
  10 nearest in feature space (`neighbour_agreement` on ``--subset`` random points, their
  neighbours searched among all N); ``label_knn10`` the share that are of its cluster.
- ``structure_knn10`` the same against the noise-free points (cluster centre + spread: same
  seed, noise 0), the structure a map should keep; ``feature_structure_knn10`` the features'
  own agreement with it: at high density the 10 nearest feature neighbours are picked by
  the noise (at 1M points: 20,000 a cluster), which no map can follow.
- ``vs_exact_knn10`` (sampled lines, when the exact map was made): the share of a point's
  10 map neighbours that are also its 10 in the exact map, over every point;
  ``exact_seed_knn10`` the same between the exact maps of seeds 0 and 1 (``--seed-floor``):
  what two runs of the exact path share.
- ``peak_rss_mb`` the process's peak resident memory so far (`getrusage` maxrss only grows:
  the first line's is the sampled path's own); ``load_avg_1m_before`` the 1-minute load
  average before that map, ``load_avg_1m`` at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedding import emit, machine

from cnnviz_widgets.inspect.embedding import (
    EARLY_ITER,
    N_ITER,
    SAMPLE,
    available_cores,
    embed,
    neighbour_agreement,
)


def mixture(n: int, d: int = 128, clusters: int = 50, spread_dims: int = 2, noise: float = 0.05):
    """`n` points of 50 Gaussian clusters in `d` dims (fixed seed), float32, and their labels.

    Centres ~ N(0, 1) per dimension (about 16 apart); each cluster spreads with standard
    deviation 2 along `spread_dims` random directions of its own, plus `noise` in every
    dimension: little enough that feature-space neighbours follow the spread, which a 2-D
    map can keep (more noise makes every map's neighbours mostly noise).
    """
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 1.0, (clusters, d)).astype(np.float32)
    bases = rng.normal(0.0, 1.0, (clusters, spread_dims, d)).astype(np.float32)
    bases /= np.linalg.norm(bases, axis=2, keepdims=True)
    labels = rng.integers(0, clusters, n)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):  # blocks: bounded temporaries at 1M points
        part = labels[start : start + 100_000]
        z = rng.normal(0.0, 2.0, (len(part), 1, spread_dims)).astype(np.float32)
        x[start : start + len(part)] = (
            centres[part]
            + (z @ bases[part])[:, 0]
            + rng.normal(0.0, noise, (len(part), d)).astype(np.float32)
        )
    return x, labels


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def timed_map(x: np.ndarray, sample: int, threads: int, seed: int = 0):
    """The map, its wall time and the time of the callback showing the sample's final map."""
    marks = {}
    done = EARLY_ITER + N_ITER

    def mark(current, iteration, iterations) -> None:
        if iteration == done:  # the last such call shows the final sample map
            marks["optimised"] = time.perf_counter()

    start = time.perf_counter()
    xy = embed(x, random_state=seed, n_jobs=threads, sample=sample, callback=mark)
    end = time.perf_counter()
    split = marks.get("optimised")
    return xy, end - start, None if split is None else (split - start, end - split)


def quality(xy: np.ndarray, x: np.ndarray, clean: np.ndarray, labels, rows) -> dict:
    return {
        "feature_knn10": round(neighbour_agreement(xy, x, k=10, rows=rows), 4),
        "structure_knn10": round(neighbour_agreement(xy, clean, k=10, rows=rows), 4),
        "label_knn10": round(label_share(xy, labels, rows), 4),
    }


def label_share(xy: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> float:
    """Mean share of the 10 nearest map neighbours (among all points) of `rows` that share
    the row's label."""
    from sklearn.neighbors import NearestNeighbors

    found = NearestNeighbors(n_neighbors=11).fit(xy).kneighbors(xy[rows], return_distance=False)
    found = np.where(found[:, :1] == rows[:, None], found[:, 1:], found[:, :10])
    return float((labels[found] == labels[rows][:, None]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--sample", type=int, nargs="+", default=[SAMPLE])
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--subset", type=int, default=10_000)
    parser.add_argument("--spread-dims", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed-floor", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()
    x, labels = mixture(args.n, spread_dims=args.spread_dims, noise=args.noise)
    rows = np.sort(np.random.default_rng(1).choice(args.n, min(args.subset, args.n), False))
    base = {
        "bench": "large_map",
        "data": f"50 Gaussian clusters ({args.spread_dims}-d spread, noise {args.noise}), "
        f"{args.n}x{x.shape[1]}",
        "n": args.n,
        "d": x.shape[1],
        "subset": len(rows),
    }
    embed(x[:500], sample=0, n_jobs=1, early_iter=1, n_iter=1)  # imports, outside the timings
    neighbour_agreement(x[:500], x[:500])
    records, maps = [], []
    for size in args.sample:  # the sampled maps first: the peak memory is theirs
        load = round(os.getloadavg()[0], 2)
        xy, map_s, split = timed_map(x, size, args.threads)
        record = base | {"path": "sampled", "sample": size, "map_s": round(map_s, 2)}
        if split is not None:
            record |= {"optimise_s": round(split[0], 2), "place_s": round(split[1], 2)}
        records.append(record | {"peak_rss_mb": peak_rss_mb(), "load_avg_1m_before": load})
        maps.append(xy)
    if args.exact:
        load = round(os.getloadavg()[0], 2)
        exact, exact_s, _ = timed_map(x, 0, args.threads)
        for record, xy in zip(records, maps, strict=True):
            record |= {
                "exact_s": round(exact_s, 2),
                "speedup_vs_exact": round(exact_s / record["map_s"], 2),
                "vs_exact_knn10": round(neighbour_agreement(xy, exact, k=10), 4),
            }
        line = base | {"path": "exact", "map_s": round(exact_s, 2), "peak_rss_mb": peak_rss_mb()}
        if args.seed_floor:
            other, _, _ = timed_map(x, 0, args.threads, seed=1)
            line |= {"exact_seed_knn10": round(neighbour_agreement(exact, other, k=10), 4)}
        records.append(line | {"load_avg_1m_before": load})
        maps.append(exact)
    clean, _ = mixture(args.n, spread_dims=args.spread_dims, noise=0.0)  # same draws, no noise
    ceiling = round(neighbour_agreement(x, clean, k=10, rows=rows), 4)
    for record, xy in zip(records, maps, strict=True):
        record |= quality(xy, x, clean, labels, rows) | {"feature_structure_knn10": ceiling}
    for record in records:
        emit(record | machine(args.threads))


if __name__ == "__main__":
    main()
