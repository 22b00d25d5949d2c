"""Named regions of a map (inspect/regions.py) against what generated the points."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from cnnviz_widgets.inspect.regions import (
    SAMPLE_MAX,
    SECOND_SHARE,
    find_regions,
    min_cluster_size,
    region_name,
)

CENTRES = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 20]], float)
SIZES = [150, 120, 90, 70, 60]


def blobs(sizes=SIZES, spread=0.6, seed=0):
    """Points around CENTRES (the blob of each point is its generating label)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    xy = CENTRES[truth] + rng.normal(scale=spread, size=(len(truth), 2))
    order = rng.permutation(len(truth))  # members are not contiguous
    return xy[order], truth[order]


def predicted_classes(truth, seed=1):
    """A 'model' that predicts class 10 + blob for 60 %, 20 + blob for 30 %, 99 for the rest."""
    rng = np.random.default_rng(seed)
    u = rng.random(len(truth))
    return np.where(u < 0.6, 10 + truth, np.where(u < 0.9, 20 + truth, 99))


def test_regions_are_the_blobs():
    xy, truth = blobs()
    found, member = find_regions(xy, predicted_classes(truth))
    assert len(found) == len(SIZES)
    assert adjusted_rand_score(truth, member) >= 0.9  # noise (-1) counts as a wrong cluster
    # largest first, and each region's members are the points that say so
    assert [len(r.indices) for r in found] == sorted((len(r.indices) for r in found), reverse=True)
    for r, region in enumerate(found):
        np.testing.assert_array_equal(region.indices, np.flatnonzero(member == r))


def test_names_are_the_commonest_predicted_classes_with_their_shares():
    xy, truth = blobs()
    predicted = predicted_classes(truth)
    names = [f"name{c}" for c in range(100)]
    found, _ = find_regions(xy, predicted, names)
    for region in found:
        counts: dict[int, int] = {}
        for i in region.indices:  # a plain count of the members' predictions
            counts[int(predicted[i])] = counts.get(int(predicted[i]), 0) + 1
        ranked = sorted(counts, key=lambda c: (-counts[c], c))
        first, second = ranked[0], ranked[1]
        share1, share2 = counts[first] / len(region.indices), counts[second] / len(region.indices)
        blob = np.bincount(truth[region.indices]).argmax()
        assert first == 10 + blob and second == 20 + blob  # 60 % and 30 % of each blob
        assert share2 >= SECOND_SHARE
        assert (
            region.name
            == f"name{first} {round(100 * share1)}% · name{second} {round(100 * share2)}%"
        )
        assert region.classes == ((first, share1), (second, share2))  # the same division
        assert region.n_classes == len(counts)


def test_typical_image_and_medoid_are_members():
    xy, truth = blobs()
    found, _ = find_regions(xy, predicted_classes(truth))
    for region in found:
        assert region.typical in region.indices and region.medoid in region.indices
        assert region.position == (xy[region.medoid, 0], xy[region.medoid, 1])
        # the medoid by brute force: the smallest summed distance to the other members
        pts = xy[region.indices]
        sums = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)).sum(1)
        assert region.medoid == region.indices[np.argmin(sums)]


def test_a_rare_second_class_is_not_named_and_unknown_classes_are_not_counted():
    classes = np.array([3] * 17 + [4] * 2 + [-1])  # 85 %, 10 % (< SECOND_SHARE), unknown
    name, shares = region_name(classes, ["a", "b", "c", "cat", "dog"])
    assert name == "cat 85%" and shares == ((3, 0.85),)
    assert region_name(np.array([2, 2, 1, 1]), [])[0] == "class 1 50% · class 2 50%"  # ties
    assert region_name(np.full(4, -1), ["a"]) == ("unclassified", ())


def test_min_cluster_size_grows_with_the_map():
    assert min_cluster_size(100) == 5 and min_cluster_size(310) == 8
    assert min_cluster_size(4000) == 100  # at most 40 regions
    xy = np.random.default_rng(0).normal(size=(7, 2))
    found, member = find_regions(xy, np.zeros(7, int))
    assert found == [] and (member == -1).all()  # too few points for two regions
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        find_regions(np.zeros((5, 3)), np.zeros(5, int))


def test_a_large_map_is_clustered_on_a_sample_and_every_point_joins():
    xy, truth = blobs([4000, 3500, 2500, 1500, 1000], spread=0.8, seed=2)
    assert len(xy) > SAMPLE_MAX
    found, member = find_regions(xy, truth)
    assert len(found) == 5
    assert adjusted_rand_score(truth, member) >= 0.9
    assert sorted(r.name for r in found) == [f"class {c} 100%" for c in range(5)]
