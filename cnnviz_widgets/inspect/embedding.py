"""Representation space: 2-D maps of per-image features (t-SNE, PCA) and exact neighbours.

>>> feats = extract_features(model, dataset)        # (N, D) float32, cached
>>> xy = embed(feats)                               # (N, 2) float32 t-SNE map
>>> idx, dist = neighbours(feats, k=10, query=7)    # image 7's 10 nearest, in feature space

t-SNE runs openTSNE when it is installed and scikit-learn's Barnes-Hut TSNE otherwise.
Wide features are first reduced to 50 dimensions by PCA, which also gives the initial map.
openTSNE runs a shortened schedule (`EARLY_ITER` + `N_ITER` instead of its 250 + 500
iterations), FFT gradients on a coarser grid (`INTS_IN_INTERVAL`) from 10,000 points and
Barnes-Hut below, exact neighbours up to `EXACT_KNN_MAX` points and Annoy above, on the
idle cores: several times faster than scikit-learn at the same k-nearest-neighbour label
agreement of the map (benchmarks/RESULTS.md). Above `LARGE` points t-SNE optimises a random
sample of `SAMPLE` and places the others on its map with openTSNE's `transform`: a million
points in minutes (`embed(sample=...)` forces either path). `neighbour_agreement` measures
how much two maps, or a map and its features, share each point's nearest neighbours.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .dataset import topk_lexicographic
from .features import clear_feature_cache, extract_features, feature_pass

__all__ = [
    "BACKENDS",
    "METHODS",
    "METRICS",
    "check_features",
    "clear_feature_cache",
    "embed",
    "extract_features",
    "feature_pass",
    "knn_agreement",
    "neighbour_agreement",
    "neighbours",
    "pca",
]

METHODS = ("tsne", "pca")
BACKENDS = ("auto", "opentsne", "sklearn")
METRICS = ("euclidean", "cosine")

PCA_DIMS = 50  # t-SNE input width: wider features are PCA-reduced first
EARLY_ITER = 125  # early-exaggeration iterations (openTSNE default 250)
N_ITER = 250  # iterations after it (openTSNE default 500)
EXAGGERATION = 12.0
#: openTSNE iterations between two `embed(callback=...)` calls
CALLBACK_EVERY = 50
INTS_IN_INTERVAL = 2  # FFT grid: embedding units per interval (openTSNE default 1)
EXACT_KNN_MAX = 25_000  # above this many points the t-SNE neighbours come from Annoy
ANNOY_TREES = 50  # recall of the 90 neighbours about 0.92 at 70,000 x 50
MIN_TSNE_POINTS = 4
FFT_MIN_POINTS = 10_000  # below, Barnes-Hut is faster (the FFT grid has a fixed cost)
#: Above this many points `embed` optimises t-SNE on a random sample of `SAMPLE` points and
#: places the others on that map (openTSNE's `transform`). At 100,000 points (one thread, 2
#: shared cores) the map of every point took 133 s and the sampled one 34 s, keeping 87% of
#: its feature-space neighbour agreement (0.50 against 0.58, benchmarks/RESULTS.md); up to
#: here the full map takes about 2 minutes and keeps more, so it stays the default.
LARGE = 100_000
#: Points optimised on the large-N path. At 100,000 points samples of 10,000 / 25,000 /
#: 50,000 took 25 / 34 / 72 s for a 10-neighbour agreement with feature space of 0.47 / 0.50
#: / 0.54 (the full map: 133 s, 0.58); 25,000 is also the most with exact neighbours.
SAMPLE = 25_000
MIN_SAMPLE = 100  # smallest sample `embed(sample=...)` accepts
PLACE_CHUNK = 50_000  # points placed per `transform` call: bounds its memory
#: Perplexity and iterations of the placement (openTSNE's transform defaults: 5 and 250).
#: At 400,000 points placed on a 10,000-point sample, perplexity 5 / 10 / 30 gave a feature
#: agreement of 0.24 / 0.27 / 0.28 in 20 / 29 / 35 s (100, 100, 50 iterations; 30 needs 90
#: neighbours, whose search took 3x as long), and 250 iterations gained at most 0.001.
PLACE_PERPLEXITY = 10.0
PLACE_ITER = 100
PLACE_TREES = 20  # Annoy trees for the placed points' neighbours in the sample


def _choices(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _check_choice(value: Any, valid: Sequence[str], what: str) -> str:
    if value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; choose one of: {_choices(valid)}")
    return value


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Threads for t-SNE: the cores not already busy with other processes (at least 1).

    t-SNE threads meet at a barrier every iteration, so on an oversubscribed machine one
    descheduled thread stalls the rest: on 2 cores shared with 3 busy processes, 2 threads
    ran 3x slower than 1. The map does not depend on the thread count.
    """
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return cores
    return max(1, min(cores, int(cores + 1 - busy + 0.5)))  # +1: the load counts us


def check_features(features: Any, name: str = "features", min_rows: int = 1) -> np.ndarray:
    """`features` as a C-contiguous float32 (N, D) array; ValueError on bad shape or values.

    Non-finite values are reported with how many rows hold them and the first few indices.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (N, D) array, one row per image; got shape {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be numbers; got dtype {array.dtype}")
    n, d = array.shape
    if n < min_rows or d == 0:
        raise ValueError(f"{name} need at least {min_rows} row(s) and 1 column; got shape {(n, d)}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        first = ", ".join(str(i) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(
            f"{name} hold NaN or inf in {bad.size} of {n} rows (rows {first}); "
            "drop those images or fix the model/inputs that produce them"
        )
    return array


# ------------------------------------------------------------------ PCA ----


def pca(features: Any, n_components: int = 2) -> np.ndarray:
    """The first `n_components` principal-component scores (N, k) float32, deterministic.

    Exact (SVD of the data when there are fewer rows than dimensions, else eigendecomposition
    of the covariance) up to 4,096 dimensions, randomized
    (`torch.pca_lowrank`, fixed seed) above. Each component's sign makes its largest
    loading positive, so the map does not flip between runs or machines.
    """
    x = check_features(features)
    n, d = x.shape
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer; got {n_components!r}")
    if n_components > min(n, d):
        raise ValueError(
            f"PCA to {n_components} dimensions needs at least {n_components} rows and columns; "
            f"features have shape {(n, d)}"
        )
    centred = torch.from_numpy((x - x.mean(axis=0, dtype=np.float64)).astype(np.float32))
    if n < d:  # few wide rows (AlexNet's 4096-d FC7 of a small folder): SVD of the data
        _, _, vt = np.linalg.svd(centred.double().numpy(), full_matrices=False)
        basis = torch.from_numpy(np.ascontiguousarray(vt[:n_components].T)).float()
    elif d <= 4096:
        cov = (centred.T @ centred).double().numpy()
        _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
        basis = torch.from_numpy(np.ascontiguousarray(vectors[:, ::-1][:, :n_components]))
        basis = basis.float()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, _, v = torch.pca_lowrank(centred, q=min(n_components + 10, n, d), center=False)
        basis = v[:, :n_components]
    peak = basis.abs().argmax(dim=0)
    signs = torch.sign(basis[peak, torch.arange(n_components)])
    basis = basis * torch.where(signs == 0, 1.0, signs)
    return (centred @ basis).numpy().astype(np.float32, copy=False)


# ---------------------------------------------------------------- t-SNE ----


def _annoy_index(x: np.ndarray, seed: int, trees: int):
    """An Annoy forest (bundled with openTSNE) of the rows of `x`: random projections.

    Built on one thread, so the forest, and every search in it, depends only on `seed`.
    """
    from openTSNE.dependencies.annoy import AnnoyIndex

    index = AnnoyIndex(x.shape[1], "euclidean")
    index.set_seed(seed)
    for i, row in enumerate(x):
        index.add_item(i, row)
    index.build(trees, n_jobs=1)
    return index


def _in_threads(work: Callable[[np.ndarray], None], n: int, n_jobs: int) -> None:
    """`work(rows)` over `range(n)` in chunks on `n_jobs` threads (Annoy drops the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, n_jobs)) as pool:
        list(pool.map(work, np.array_split(np.arange(n), max(1, n_jobs) * 4)))


def _annoy_knn(x: np.ndarray, k: int, n_jobs: int, seed: int):
    """Approximate kNN by Annoy of every row of `x` among the others."""
    n = len(x)
    index = _annoy_index(x, seed, ANNOY_TREES)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)

    def rows(chunk: np.ndarray) -> None:
        for i in chunk:
            found, dist = index.get_nns_by_item(int(i), k + 1, include_distances=True)
            keep = [j for j, f in enumerate(found) if f != i][:k]
            if len(keep) < k:  # cannot happen with N > EXACT_KNN_MAX and k <= 90
                raise RuntimeError("Annoy returned too few neighbours")
            indices[i] = [found[j] for j in keep]
            distances[i] = [dist[j] for j in keep]

    _in_threads(rows, n, n_jobs)
    return indices, distances


def _annoy_query(x: np.ndarray, queries: np.ndarray, k: int, n_jobs: int, seed: int):
    """Approximate kNN by Annoy (`PLACE_TREES` trees) of each query row among the rows of
    `x`: (indices int32, distances float32), compact for a million queries."""
    index = _annoy_index(x, seed, PLACE_TREES)
    indices = np.empty((len(queries), k), dtype=np.int32)
    distances = np.empty((len(queries), k), dtype=np.float32)

    def rows(chunk: np.ndarray) -> None:
        for i in chunk:
            found, dist = index.get_nns_by_vector(queries[i], k, include_distances=True)
            if len(found) < k:  # cannot happen: the sample holds more than k points
                raise RuntimeError("Annoy returned too few neighbours")
            indices[i], distances[i] = found, dist

    _in_threads(rows, len(queries), n_jobs)
    return indices, distances


def _exact_knn(queries: np.ndarray, data: np.ndarray, k: int, skip_self: bool):
    """(indices, euclidean distances) of each query row's k nearest rows of `data`, exact.

    Blocked matrix products (about 16M distances a block, so memory stays bounded);
    `skip_self`: the queries are `data` itself and a row is not its own neighbour.
    """
    t = torch.from_numpy(data)
    queries_t = torch.from_numpy(queries)
    sq = (t * t).sum(dim=1)
    query_sq = sq if skip_self else (queries_t * queries_t).sum(dim=1)
    n, m = len(data), len(queries)
    indices = np.empty((m, k), dtype=np.int64)
    distances = np.empty((m, k), dtype=np.float64)
    block = max(1, min(m, 2**24 // n))
    for start in range(0, m, block):
        q = queries_t[start : start + block]
        rows = torch.arange(len(q))
        d2 = sq[None, :] - 2.0 * (q @ t.T)  # + |q|^2, added after the ranking
        if skip_self:
            d2[rows, rows + start] = float("inf")
        value, index = d2.topk(k, dim=1, largest=False)
        value = (value + query_sq[start : start + block, None]).clamp_(min=0).sqrt_()
        indices[start : start + block] = index.numpy()
        distances[start : start + block] = value.numpy()
    return indices, distances


def _tsne_knn(x: np.ndarray, k: int, n_jobs: int, seed: int):
    """(indices, euclidean distances) of each point's k nearest others, for the affinities.

    Exact (blocked matrix products) up to `EXACT_KNN_MAX` points, Annoy above: t-SNE maps
    barely change with approximate neighbours, and exact search grows as N^2.
    """
    if len(x) > EXACT_KNN_MAX:
        return _annoy_knn(x, k, n_jobs, seed)
    return _exact_knn(x, x, k, skip_self=True)


def _effective_perplexity(perplexity: float, n: int) -> float:
    if not (isinstance(perplexity, (int, float)) and perplexity > 0):
        raise ValueError(f"perplexity must be a positive number; got {perplexity!r}")
    limit = (n - 1) / 3
    if perplexity > limit:
        warnings.warn(
            f"perplexity {perplexity} needs more than {3 * perplexity:.0f} points; with {n} "
            f"points it is lowered to {limit:.2f}",
            stacklevel=3,
        )
        return limit
    return float(perplexity)


def _initial_map(x: np.ndarray) -> np.ndarray:
    """The first two PCA scores scaled to a standard deviation of 1e-4 (openTSNE's init)."""
    start = x[:, :2].astype(np.float64)
    scale = start[:, 0].std()
    return start / scale * 1e-4 if scale > 0 else np.zeros_like(start)


def _tsne_embedding(x, perplexity, random_state, n_jobs, verbose):
    """An openTSNE `TSNEEmbedding` of `x` at its PCA start, not yet optimised.

    The affinities come from `_tsne_knn` (exact or seeded Annoy neighbours), so the map is
    deterministic for a `random_state` whatever the thread count.
    """
    from openTSNE import TSNEEmbedding, affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = len(x)
    k = min(n - 1, int(3 * perplexity))
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    indices, distances = _tsne_knn(x, k, n_jobs, seed)
    affinities = affinity.PerplexityBasedNN(
        knn_index=PrecomputedNeighbors(indices, distances),
        perplexity=perplexity,
        n_jobs=n_jobs,
        verbose=verbose,
    )
    return TSNEEmbedding(
        _initial_map(x),
        affinities,
        negative_gradient_method="fft" if n >= FFT_MIN_POINTS else "bh",
        ints_in_interval=INTS_IN_INTERVAL,
        n_jobs=n_jobs,
        random_state=random_state,
        verbose=verbose,
    )


def _optimise(embedding, early_iter: int, n_iter: int, callback, total: int) -> None:
    """Run the two t-SNE phases on `embedding` in place: early exaggeration, then the rest.

    `callback(map, iteration, total)` every `CALLBACK_EVERY` iterations (openTSNE passes
    the current map); `total` may exceed `early_iter + n_iter` when more steps follow.
    """
    n = len(embedding)

    def every(offset: int) -> dict:
        if callback is None:
            return {}

        def call(iteration, error, current):  # openTSNE's signature; True would stop it
            callback(np.asarray(current, dtype=np.float32), offset + iteration, total)

        return {"callbacks": [call], "callbacks_every_iters": CALLBACK_EVERY}

    embedding.optimize(
        early_iter,
        exaggeration=EXAGGERATION,
        momentum=0.5,
        learning_rate=max(n / EXAGGERATION, 200.0),
        inplace=True,
        propagate_exception=True,
        **every(0),
    )
    embedding.optimize(
        n_iter,
        momentum=0.8,
        learning_rate=max(float(n), 200.0),
        inplace=True,
        propagate_exception=True,
        **every(early_iter),
    )


def _tsne_opentsne(x, perplexity, random_state, n_jobs, early_iter, n_iter, verbose, callback):
    """openTSNE's t-SNE of every point of `x`: the exact path."""
    embedding = _tsne_embedding(x, perplexity, random_state, n_jobs, verbose)
    _optimise(embedding, early_iter, n_iter, callback, early_iter + n_iter)
    return np.asarray(embedding)


# ------------------------------------------------ t-SNE of many points ----


def _sample_rows(n: int, size: int, random_state) -> np.ndarray:
    """`size` distinct rows of `n`, drawn at random (seeded by `random_state`), sorted."""
    rng = np.random.default_rng(None if random_state is None else [random_state, 1])
    return np.sort(rng.choice(n, size=size, replace=False))


class _SampleNeighbours:
    """openTSNE's kNN-index interface over neighbours found up front (no openTSNE import).

    `build()` gives the sample's own neighbours (for its affinities); `query(rows, k)` the
    neighbours in the sample of the other points numbered `rows`: `_place` hands
    `TSNEEmbedding.transform` those row numbers as its data, which openTSNE only forwards
    here, so each chunk's search is not repeated.
    """

    def __init__(self, indices, distances, other_indices, other_distances):
        self.indices, self.distances = indices, distances
        self.other_indices, self.other_distances = other_indices, other_distances
        self.n_samples, self.k = indices.shape

    def build(self):
        return self.indices, self.distances

    def query(self, rows, k):
        rows = np.asarray(rows)[:, 0]
        found = self.other_indices[rows, :k].astype(np.int64)
        return found, self.other_distances[rows, :k].astype(np.float64)


def _place(embedding, others: int, full, placed, callback, step: int, total: int) -> None:
    """Add the `others` points to the optimised sample map by `TSNEEmbedding.transform`.

    Chunks of `PLACE_CHUNK` points, so the affinities and gradients held stay bounded;
    each point is optimised against the sample only (openTSNE's transform: perplexity
    `PLACE_PERPLEXITY`, start at the median of its neighbours, `PLACE_ITER` iterations).
    `full[placed]` receives the positions; `callback(full, step + chunk, total)` after each.
    """
    for number, start in enumerate(range(0, others, PLACE_CHUNK), start=1):
        rows = np.arange(start, min(others, start + PLACE_CHUNK))
        part = embedding.transform(rows[:, None], perplexity=PLACE_PERPLEXITY, n_iter=PLACE_ITER)
        full[placed[rows]] = np.asarray(part)
        if callback is not None:
            callback(full, step + number, total)


def _neighbours_in_sample(queries, x_sample, k: int, n_jobs: int, seed: int):
    """Each query row's k nearest sample rows: (indices int32, distances float32).

    Exact up to `EXACT_KNN_MAX`^2 distances, Annoy above (a million queries against
    25,000 sample points take minutes exactly, a fraction of that in a forest).
    """
    if len(queries) * len(x_sample) > EXACT_KNN_MAX**2:
        return _annoy_query(x_sample, queries, k, n_jobs, seed)
    found, dist = _exact_knn(queries, x_sample, k, skip_self=False)
    return found.astype(np.int32), dist.astype(np.float32)


def _tsne_sampled(x, size, perplexity, random_state, n_jobs, early_iter, n_iter, verbose, callback):
    """t-SNE of many points: optimise a random sample of `size`, then place the rest.

    The sample map is openTSNE's (as `_tsne_opentsne`); every other point is then placed
    against it by `_place`, from its neighbours in the sample. Until placed, a point is
    drawn on its nearest sample point, so `callback` always sees all N points: it animates
    the sample's optimisation, shows its final map, then one step per placed chunk.
    """
    n = len(x)
    sample = _sample_rows(n, size, random_state)
    rest = np.ones(n, dtype=bool)
    rest[sample] = False
    placed = np.flatnonzero(rest)
    x_sample = np.ascontiguousarray(x[sample])
    perplexity = min(perplexity, (size - 1) / 3)
    embedding = _tsne_embedding(x_sample, perplexity, random_state, n_jobs, verbose)
    k = min(size, int(3 * PLACE_PERPLEXITY))  # what openTSNE's transform asks for
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    found, dist = _neighbours_in_sample(x[placed], x_sample, k, n_jobs, seed)
    own = embedding.affinities.knn_index
    embedding.affinities.knn_index = _SampleNeighbours(own.indices, own.distances, found, dist)
    nearest = found[:, 0]
    full = np.empty((n, 2), dtype=np.float32)
    total = early_iter + n_iter + -(-len(placed) // PLACE_CHUNK)

    def step(current: np.ndarray, iteration: int, iterations: int) -> None:
        full[sample] = current
        full[placed] = current[nearest]
        callback(full, iteration, iterations)

    _optimise(embedding, early_iter, n_iter, None if callback is None else step, total)
    embedding -= (embedding.max(axis=0) + embedding.min(axis=0)) / 2  # as transform does
    full[sample] = embedding
    full[placed] = np.asarray(embedding)[nearest]
    if callback is not None:  # the sample's final map, before the placement
        callback(full, early_iter + n_iter, total)
    _place(embedding, len(placed), full, placed, callback, early_iter + n_iter, total)
    return full


def _sample_size(sample: Any, n: int, backend: str) -> int:
    """How many points the t-SNE optimises: `n` (exact) or a sample size below `n`.

    `sample` None: `SAMPLE` above `LARGE` points with openTSNE, else every point; 0 or
    False: every point; a positive integer: that many (at least `MIN_SAMPLE`).
    """
    if sample is None:
        return SAMPLE if n > LARGE and backend == "opentsne" and n > SAMPLE else n
    if sample is False:
        return n
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 0:
        raise ValueError(f"sample must be None, 0/False or a positive integer; got {sample!r}")
    if sample == 0 or sample >= n:
        return n
    if sample < MIN_SAMPLE:
        raise ValueError(f"sample must be at least {MIN_SAMPLE} points; got {sample}")
    if backend != "opentsne":
        raise ValueError("a t-SNE of a sample needs openTSNE (backend 'opentsne')")
    return int(sample)


def _tsne_sklearn(x, perplexity, random_state, n_jobs, verbose):
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init=_initial_map(x) if x.shape[1] >= 2 else "random",
        learning_rate="auto",
        random_state=random_state,
        n_jobs=n_jobs,
        verbose=int(verbose),
    )
    with threadpool_limits(n_jobs):  # its gradient's OpenMP threads ignore n_jobs
        return tsne.fit_transform(x)


def has_opentsne() -> bool:
    """Whether openTSNE is installed."""
    return importlib.util.find_spec("openTSNE") is not None


def embed(
    features: Any,
    method: str = "tsne",
    random_state: int = 0,
    *,
    perplexity: float = 30.0,
    backend: str = "auto",
    pca_dims: int = PCA_DIMS,
    early_iter: int = EARLY_ITER,
    n_iter: int = N_ITER,
    n_jobs: int | None = None,
    verbose: bool = False,
    callback: Callable[[np.ndarray, int, int], None] | None = None,
    sample: int | bool | None = None,
) -> np.ndarray:
    """A 2-D map (N, 2) float32 of (N, D) features by t-SNE (default) or PCA.

    t-SNE: features wider than `pca_dims` are PCA-reduced first; the map starts from the
    first two principal components and is deterministic for a given `random_state`.
    `backend` "auto" uses openTSNE when installed, else scikit-learn ("opentsne" and
    "sklearn" force one; `early_iter`/`n_iter` apply to openTSNE only). `n_jobs` defaults
    to the idle cores (`default_jobs`). `perplexity` is lowered, with a warning, for fewer
    than 3 * perplexity + 1 points; t-SNE needs `MIN_TSNE_POINTS`, PCA maps a single image
    to the origin. `callback(map_so_far, iteration, iterations)` is called
    every `CALLBACK_EVERY` openTSNE iterations (a widget animates the map; an exception it
    raises, such as a cancellation, ends the optimisation); scikit-learn's t-SNE has no such
    hook and PCA is one step.

    Many points (more than `LARGE`, with openTSNE): t-SNE optimises a random sample of
    `SAMPLE` points (drawn from `random_state`) and places every other point on that map
    with openTSNE's `transform`, in chunks of `PLACE_CHUNK` (`_tsne_sampled`). The callback
    then always gets all N points (those not yet placed on their nearest sample point): the
    sample's iterations, its final map at `early_iter + n_iter`, then one step per placed
    chunk, `iterations` counting those steps too. `sample` forces a path: 0 or False, every
    point; a positive integer, a sample of that many (the whole set when it is not smaller).
    """
    _check_choice(method, METHODS, "method")
    _check_choice(backend, BACKENDS, "backend")
    x = check_features(features)
    if method == "pca":
        if len(x) == 1:  # one image: one point, at the centre of the map
            return np.zeros((1, 2), np.float32)
        if x.shape[1] == 1:
            return np.concatenate([x - x.mean(), np.zeros_like(x)], axis=1)
        return pca(x, 2)
    n = len(x)
    if n < MIN_TSNE_POINTS:
        raise ValueError(
            f"t-SNE needs at least {MIN_TSNE_POINTS} points; got {n}. Use method='pca'"
        )
    for name, value in (("early_iter", early_iter), ("n_iter", n_iter), ("pca_dims", pca_dims)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    perplexity = _effective_perplexity(perplexity, n)
    if backend == "auto":
        backend = "opentsne" if has_opentsne() else "sklearn"
    elif backend == "opentsne" and not has_opentsne():
        raise ImportError("backend='opentsne' needs openTSNE: pip install openTSNE")
    size = _sample_size(sample, n, backend)
    jobs = default_jobs() if n_jobs is None else int(n_jobs)
    dims = min(max(pca_dims, 2), n, x.shape[1])
    # Principal-component scores also when not reducing: their first two columns are the init.
    reduced = pca(x, dims) if x.shape[1] >= 2 else x
    if size < n:
        xy = _tsne_sampled(
            reduced, size, perplexity, random_state, jobs, early_iter, n_iter, verbose, callback
        )
    elif backend == "opentsne":
        xy = _tsne_opentsne(
            reduced, perplexity, random_state, jobs, early_iter, n_iter, verbose, callback
        )
    else:
        xy = _tsne_sklearn(reduced, perplexity, random_state, jobs, verbose)
    return np.ascontiguousarray(xy, dtype=np.float32)


# ----------------------------------------------------------- neighbours ----


def _query_rows(query: Any, n: int) -> np.ndarray | None:
    """Dataset indices to query (None: every row); ValueError when out of range."""
    if query is None:
        return None
    rows = np.atleast_1d(np.asarray(query))
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        return None
    bad = rows[(rows < -n) | (rows >= n)]
    if bad.size:
        raise ValueError(f"query index {int(bad[0])} is out of range for {n} feature rows")
    return rows % n


def neighbours(
    features: Any,
    k: int = 10,
    metric: str = "euclidean",
    query: Any = None,
    *,
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours in feature space: (indices (M, k) int64, distances (M, k)).

    `query`: None (every row, each excluding itself), a row index or a sequence of them
    (excluding themselves), or a (M, D) array of new feature vectors (nothing excluded).
    `metric` "euclidean" or "cosine" (1 - cosine similarity; an all-zero row is at distance 1
    from everything). Distances are computed in float64; ties go to the lower index. `k` may
    be 0 (empty (M, 0) results: a single image has no neighbours).
    """
    _check_choice(metric, METRICS, "metric")
    x = check_features(features)
    n, d = x.shape
    rows = _query_rows(query, n)
    if query is None or rows is not None:
        q = x if rows is None else x[rows]
        exclude = np.arange(n) if rows is None else rows
    else:
        q = check_features(query, name="query")
        if q.shape[1] != d:
            raise ValueError(f"query has {q.shape[1]} columns but features have {d}")
        exclude = None
    limit = n - 1 if exclude is not None else n
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= limit:
        if not limit:
            raise ValueError(f"k must be 0 for {n} feature row: it has no neighbour; got {k!r}")
        raise ValueError(
            f"k must be an integer in 1..{limit} (or 0, for none) for {n} feature rows; got {k!r}"
        )
    if k == 0:  # none asked for (or none there: a single row has no other)
        return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
    data = torch.from_numpy(x.astype(np.float64))
    queries = torch.from_numpy(q.astype(np.float64))
    if metric == "cosine":
        data = data / data.norm(dim=1, keepdim=True).clamp_min(1e-300)
        queries = queries / queries.norm(dim=1, keepdim=True).clamp_min(1e-300)
    else:
        sq = (data * data).sum(dim=1)
    m = len(queries)
    indices = np.empty((m, k), dtype=np.int64)
    distances = np.empty((m, k), dtype=np.float32)
    block = block_rows or max(1, min(m, 2**23 // n))
    for start in range(0, m, block):
        qb = queries[start : start + block]
        if metric == "cosine":
            dist = 1.0 - qb @ data.T
        else:
            dist = ((qb * qb).sum(dim=1, keepdim=True) - 2.0 * (qb @ data.T) + sq).clamp_(min=0)
        if exclude is not None:
            mine = torch.from_numpy(exclude[start : start + block])
            dist[torch.arange(len(qb)), mine] = float("inf")
        value, index = topk_lexicographic(-dist, k)
        value = -value
        if metric == "euclidean":
            value = value.sqrt()
        indices[start : start + block] = index.numpy()
        distances[start : start + block] = value.numpy()
    return indices, distances


def knn_agreement(points: Any, labels: Any, k: int = 10) -> float:
    """Mean fraction of each point's k nearest neighbours (euclidean) that share its label.

    Works on a 2-D map or on features; 1.0 means every neighbourhood is one class.
    """
    from sklearn.neighbors import NearestNeighbors

    x = check_features(points, name="points", min_rows=2)
    y = np.asarray(labels)
    if y.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},), one per point; got {y.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < len(x):
        raise ValueError(f"k must be an integer in 1..{len(x) - 1}; got {k!r}")
    index = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    return float((y[index] == y[:, None]).mean())


def _knn_rows(x: np.ndarray, k: int, rows: np.ndarray | None) -> np.ndarray:
    """Indices of the k nearest other points of `x` (euclidean) for each of `rows`."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k + 1 if rows is not None else k).fit(x)
    if rows is None:
        return index.kneighbors(return_distance=False)
    found = index.kneighbors(x[rows], return_distance=False)
    keep = found != rows[:, None]  # drop each row itself (or, in a tie, its last neighbour)
    keep[keep.sum(axis=1) > k, -1] = False
    return found[keep].reshape(len(rows), k)


def neighbour_agreement(a: Any, b: Any, k: int = 10, rows: Any = None) -> float:
    """Mean fraction of each point's k nearest neighbours in `a` that are also among its k
    nearest in `b`: how well two maps (or a map and its features) agree locally.

    `a` and `b` hold the same N points as rows, of any widths (a 2-D map against another,
    or against the features it was made from). 1.0: the same neighbourhoods; k / (N - 1)
    is what unrelated arrangements score on average. `rows` (indices) scores only those
    points, their neighbours still searched among all N: a cheap estimate for large N.
    """
    x = check_features(a, name="a", min_rows=2)
    y = check_features(b, name="b", min_rows=2)
    if len(x) != len(y):
        raise ValueError(f"a and b must hold the same points; got {len(x)} and {len(y)} rows")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < len(x):
        raise ValueError(f"k must be an integer in 1..{len(x) - 1}; got {k!r}")
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0 or rows.min() < 0 or rows.max() >= len(x):
            raise ValueError(f"rows must be indices in 0..{len(x) - 1}")
    found_a, found_b = _knn_rows(x, k, rows), _knn_rows(y, k, rows)
    shared = (found_a[:, :, None] == found_b[:, None, :]).any(axis=2)
    return float(shared.mean())


def grid_layout(points: Any) -> np.ndarray:
    """Snap 2-D points to a near-square grid keeping their arrangement: rows by y, then x.

    Returns (N, 2) float32 cell centres (column, row), one distinct cell per point.
    """
    xy = check_features(points, name="points")
    if xy.shape[1] != 2:
        raise ValueError(f"points must be (N, 2); got shape {xy.shape}")
    n = len(xy)
    cols = int(np.ceil(np.sqrt(n)))
    out = np.empty((n, 2), dtype=np.float32)
    by_y = np.argsort(xy[:, 1], kind="stable")
    for row, start in enumerate(range(0, n, cols)):
        members = by_y[start : start + cols]
        members = members[np.argsort(xy[members, 0], kind="stable")]
        out[members, 0] = np.arange(len(members))
        out[members, 1] = row
    return out
