"""Named regions of a 2-D map: its density clusters, each named by its commonest classes.

>>> found = find_regions(xy, predictions, class_names)   # list of Region, largest first
>>> found[0].name, found[0].indices, found[0].typical    # "tabby 40% · tiger cat 25%", ...

The regions are scikit-learn's HDBSCAN clusters of the map's points (not of the features: the
regions are the ones the eye sees on the map). `min_cluster_size` defaults to N / 40 (at least
5): a region holds at least 2.5 % of the points, so a map has at most 40 region names. Above
`SAMPLE_MAX` points HDBSCAN runs on a fixed random sample (its cost grows faster than N) and
every other point joins the region of its nearest sampled point.

Per region: its members; its name, the one or two commonest classes of its members with their
shares of the members (the second when it holds at least `SECOND_SHARE`); its most typical
image, the member with the highest HDBSCAN membership probability (ties, common at 1.0, go to
the one nearest the medoid); and its medoid, the member with the smallest summed distance to
the others (over `MEDOID_SAMPLE` members of a larger region), where its name is drawn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Region", "cluster_map", "find_regions", "min_cluster_size", "region_name"]

#: a region holds at least 1/MAX_REGIONS of the points (so at most this many regions)
MAX_REGIONS = 40
MIN_CLUSTER = 5  # HDBSCAN's own default, the floor for small maps
SAMPLE_MAX = 10_000  # HDBSCAN on at most this many points (the rest join their nearest)
MEDOID_SAMPLE = 1_000  # medoid distances summed over at most this many members
SECOND_SHARE = 0.15  # the second class is named when it holds this share of the region
TOP_CLASSES = 2


@dataclass(frozen=True)
class Region:
    """A density cluster of the map: members, name, typical image, label position."""

    indices: np.ndarray  # (M,) int64 point indices, ascending
    name: str  # e.g. "golden retriever 62% · Labrador retriever 20%"
    classes: tuple[tuple[int, float], ...]  # the named classes and their shares of the members
    typical: int  # the member with the highest membership probability
    medoid: int  # the member where the name is drawn
    position: tuple[float, float]  # the medoid's map position
    n_classes: int  # how many distinct classes its members have


def min_cluster_size(n: int) -> int:
    """HDBSCAN's `min_cluster_size` for a map of `n` points: n / MAX_REGIONS, at least 5."""
    return max(MIN_CLUSTER, -(-int(n) // MAX_REGIONS))


def _check_map(xy) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"the map must be (N, 2) points; got shape {xy.shape}")
    if not np.isfinite(xy).all():
        raise ValueError("the map holds NaN or inf")
    return xy


def cluster_map(
    xy, min_size: int | None = None, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(region of each point, -1 for noise; membership probability, NaN where not sampled).

    HDBSCAN on the points (a sample of `SAMPLE_MAX` above that), regions numbered largest first.
    """
    from sklearn.cluster import HDBSCAN
    from sklearn.neighbors import NearestNeighbors

    xy = _check_map(xy)
    n = len(xy)
    size = min_cluster_size(min(n, SAMPLE_MAX)) if min_size is None else int(min_size)
    labels, prob = np.full(n, -1, np.int64), np.full(n, np.nan)
    if n < max(2 * size, 3):  # too few points for two regions
        return labels, prob
    sample = np.arange(n)
    if n > SAMPLE_MAX:
        rng = np.random.default_rng(random_state)
        sample = np.sort(rng.choice(n, SAMPLE_MAX, replace=False))
    fit = HDBSCAN(min_cluster_size=size, copy=True).fit(xy[sample])
    labels[sample], prob[sample] = fit.labels_, fit.probabilities_
    if len(sample) < n:
        rest = np.setdiff1d(np.arange(n), sample)
        nearest = NearestNeighbors(n_neighbors=1).fit(xy[sample]).kneighbors(xy[rest])[1][:, 0]
        labels[rest] = fit.labels_[nearest]
    found = labels[labels >= 0]
    order = np.argsort(-np.bincount(found), kind="stable")  # largest first, then by number
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels[labels >= 0] = rank[found]
    return labels, prob


def region_name(
    classes: np.ndarray, names: Sequence[str], top: int = TOP_CLASSES
) -> tuple[str, tuple[tuple[int, float], ...]]:
    """The commonest classes of a region's members (`classes`, -1 unknown; ties: the lower
    class) with their shares of all members: ("tabby 40% · tiger cat 25%", ((281, 0.4), ...))."""
    counts = Counter(int(c) for c in classes if c >= 0)
    commonest = sorted(counts.items(), key=lambda ck: (-ck[1], ck[0]))[:top]
    shares = [(c, k / len(classes)) for c, k in commonest]
    shares = shares[:1] + [(c, s) for c, s in shares[1:] if s >= SECOND_SHARE]
    if not shares:
        return "unclassified", ()
    name = " · ".join(
        f"{names[c] if c < len(names) else f'class {c}'} {round(100 * s)}%" for c, s in shares
    )
    return name, tuple(shares)


def _medoid(xy: np.ndarray, members: np.ndarray, random_state: int) -> int:
    """The member with the smallest summed distance to (a sample of) the others."""
    refs = members
    if len(members) > MEDOID_SAMPLE:
        refs = np.random.default_rng(random_state).choice(members, MEDOID_SAMPLE, replace=False)
    best, best_sum = int(members[0]), np.inf
    for start in range(0, len(members), 1024):
        rows = members[start : start + 1024]
        sums = np.linalg.norm(xy[rows, None] - xy[None, refs], axis=-1).sum(axis=1)
        k = int(np.argmin(sums))
        if sums[k] < best_sum:
            best, best_sum = int(rows[k]), float(sums[k])
    return best


def _typical(xy: np.ndarray, members: np.ndarray, prob: np.ndarray, medoid: int) -> int:
    """The member with the highest membership probability; ties: the one nearest the medoid."""
    p = np.nan_to_num(prob[members], nan=-1.0)
    top = members[p == p.max()]
    return int(top[np.argmin(np.linalg.norm(xy[top] - xy[medoid], axis=1))])


def find_regions(
    xy,
    classes,
    names: Sequence[str] = (),
    *,
    min_size: int | None = None,
    random_state: int = 0,
) -> tuple[list[Region], np.ndarray]:
    """The named regions of map `xy` (N, 2), largest first, and each point's region (-1: none).

    `classes` (N,) names the regions (the model's predicted class of each point, -1 unknown);
    `names` the classes (missing ones are called "class i").
    """
    xy = _check_map(xy)
    classes = np.asarray(classes).reshape(-1)
    if len(classes) != len(xy):
        raise ValueError(f"classes must have one entry per point ({len(xy)}); got {len(classes)}")
    labels, prob = cluster_map(xy, min_size, random_state)
    regions = []
    for r in range(int(labels.max(initial=-1)) + 1):
        members = np.flatnonzero(labels == r)
        name, shares = region_name(classes[members], names)
        medoid = _medoid(xy, members, random_state)
        typical = _typical(xy, members, prob, medoid)
        where = (float(xy[medoid, 0]), float(xy[medoid, 1]))
        distinct = len(np.unique(classes[members][classes[members] >= 0]))
        regions.append(Region(members, name, shares, typical, medoid, where, distinct))
    return regions, labels
