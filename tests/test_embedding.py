"""Features by one cached pass, PCA/t-SNE maps of the digits, exact neighbours, bad input."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import cnnviz_widgets.inspect.dataset as dataset_module
import cnnviz_widgets.inspect.embedding as embed_module
from cnnviz_widgets.inspect.embedding import (
    embed,
    extract_features,
    feature_pass,
    knn_agreement,
    neighbours,
    pca,
)


@pytest.fixture(scope="module")
def digits():
    from cnnviz_widgets.demo import load_demo

    model, dataset, _ = load_demo("all")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = np.array([dataset[i][1] for i in range(len(dataset))])
    return model, dataset, images, labels


@pytest.fixture(scope="module")
def feats(digits):
    model, dataset, _, _ = digits
    return extract_features(model, dataset, progress=False)


@pytest.fixture(scope="module")
def tsne_map(feats):
    return embed(feats, "tsne", random_state=0)


# ------------------------------------------------------------ features ----


def test_penultimate_features_equal_model_features(digits, feats):
    model, _, images, _ = digits
    with torch.inference_mode():
        expected = model.features(images).numpy()
    assert feats.shape == (len(images), 128) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("by_module", [False, True])
def test_conv_layer_features_are_pooled_direct_forward(digits, by_module):
    model, dataset, images, _ = digits
    layer = model.conv2 if by_module else "conv2"
    got = extract_features(model, dataset, layer, progress=False, cache=False)
    with torch.inference_mode():
        expected = model.conv2(model.pool1(model.relu1(model.conv1(images)))).mean(dim=(2, 3))
    assert got.shape == (len(images), 32)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_dataloader_and_float16(digits, feats):
    model, dataset, _, _ = digits
    loader = DataLoader(dataset, batch_size=100, shuffle=False)
    np.testing.assert_allclose(
        extract_features(model, loader, progress=False), feats, rtol=1e-5, atol=1e-5
    )
    half = extract_features(model, dataset, progress=False, dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), feats, rtol=2e-3, atol=2e-3)


def test_feature_pass_gives_labels_and_predictions(digits):
    model, dataset, images, labels = digits
    result = feature_pass(model, dataset, progress=False)
    np.testing.assert_array_equal(result.labels, labels)
    with torch.inference_mode():
        logits = model(images)
    np.testing.assert_array_equal(result.predictions, logits.argmax(dim=1).numpy())
    assert (result.predictions == labels).mean() > 0.9


def test_cache_hit_is_instant_and_invalidated_by_new_weights(digits, monkeypatch):
    _, dataset, images, _ = digits
    model = copy.deepcopy(digits[0])
    passes = []
    real_pass = dataset_module.dataset_pass  # cached_pass runs it

    def counting(*args, **kwargs):
        passes.append(1)
        return real_pass(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "dataset_pass", counting)
    first = extract_features(model, dataset, progress=False)
    again = extract_features(model, dataset, progress=False)
    assert again is first and len(passes) == 1
    assert not first.flags.writeable  # shared with the cache, so callers cannot corrupt it
    with torch.no_grad():
        model.fc1.bias += 1.0
    changed = extract_features(model, dataset, progress=False)
    assert len(passes) == 2 and changed is not first
    with torch.inference_mode():
        np.testing.assert_allclose(changed, model.features(images).numpy(), rtol=1e-5, atol=1e-5)
    other_layer = extract_features(model, dataset, "conv3", progress=False)
    assert len(passes) == 3 and other_layer.shape == (len(images), 64)


def test_empty_dataset_raises(digits):
    model = digits[0]
    empty = TensorDataset(torch.zeros(0, 1, 32, 32), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        extract_features(model, empty, progress=False)


def test_unknown_layer_and_dtype(digits):
    model, dataset, _, _ = digits
    with pytest.raises(ValueError, match=r"Unknown layer 'conv9'.*conv1"):
        extract_features(model, dataset, "conv9", progress=False)
    with pytest.raises(ValueError, match="float32, float16"):
        extract_features(model, dataset, dtype=np.int8, progress=False)


# ---------------------------------------------------------------- maps ----


def test_tsne_map_of_digits_keeps_classes_together(digits, tsne_map):
    labels = digits[3]
    assert tsne_map.shape == (len(labels), 2) and tsne_map.dtype == np.float32
    agreement = knn_agreement(tsne_map, labels, k=10)
    print(f"t-SNE map kNN(10) label agreement: {agreement:.4f}")
    assert agreement >= 0.95


def test_pca_map_of_digits(digits, feats):
    labels = digits[3]
    xy = embed(feats, "pca")
    agreement = knn_agreement(xy, labels, k=10)
    print(f"PCA map kNN(10) label agreement: {agreement:.4f}")
    assert xy.shape == (len(labels), 2) and xy.dtype == np.float32
    assert agreement > 0.5


def test_pca_equals_exact_svd_with_fixed_signs(feats):
    x = feats.astype(np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:5].T
    got = pca(feats, 5)
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-3, atol=1e-3)
    basis = np.linalg.lstsq(centred, got, rcond=None)[0]
    peak = np.abs(basis).argmax(axis=0)
    assert (basis[peak, np.arange(5)] > 0).all()  # largest loading positive: no flips


def test_tsne_is_deterministic_for_a_random_state(feats):
    subset = feats[:400]
    a = embed(subset, random_state=3)
    np.testing.assert_array_equal(a, embed(subset, random_state=3))


def test_sklearn_backend_and_fallback_when_opentsne_missing(digits, feats, monkeypatch):
    labels = digits[3][:300]
    direct = embed(feats[:300], backend="sklearn", n_jobs=1)
    assert direct.shape == (300, 2)
    assert knn_agreement(direct, labels) > 0.9
    monkeypatch.setattr(embed_module, "has_opentsne", lambda: False)
    calls = []
    real = embed_module._tsne_sklearn
    monkeypatch.setattr(
        embed_module, "_tsne_sklearn", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    np.testing.assert_array_equal(embed(feats[:300], n_jobs=1), direct)
    assert calls == [1]
    with pytest.raises(ImportError, match="pip install openTSNE"):
        embed(feats[:300], backend="opentsne")


def test_tiny_inputs_lower_perplexity_or_raise(feats):
    with pytest.warns(UserWarning, match="perplexity 30.* lowered to 3.00"):
        xy = embed(feats[:10])
    assert xy.shape == (10, 2) and np.isfinite(xy).all()
    with pytest.raises(ValueError, match="at least 4 points; got 3"):
        embed(feats[:3])
    assert embed(feats[:3], "pca").shape == (3, 2)


# ------------------------------------------------- maps of many points ----


def separated_clusters(n: int = 1500, clusters: int = 8, seed: int = 0):
    """`n` points of `clusters` well-separated Gaussian clusters in 32 dims, and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    centres = rng.normal(0.0, 3.0, (clusters, 32))
    return (centres[labels] + rng.normal(0.0, 1.0, (n, 32))).astype(np.float32), labels


@pytest.fixture
def small_large(monkeypatch):
    """The large-N path at small N: a threshold of 1,000 points, a sample of 400, chunks of
    300, a short schedule, and Annoy for the placed points' neighbours in the sample."""
    monkeypatch.setattr(embed_module, "LARGE", 1000)
    monkeypatch.setattr(embed_module, "SAMPLE", 400)
    monkeypatch.setattr(embed_module, "PLACE_CHUNK", 300)
    monkeypatch.setattr(embed_module, "PLACE_ITER", 100)
    monkeypatch.setattr(embed_module, "EXACT_KNN_MAX", 500)  # 1,100 x 400 > 500^2: Annoy


def test_large_inputs_map_a_sample_and_place_the_rest(small_large, monkeypatch):
    x, labels = separated_clusters()
    calls = []

    def record(current, iteration, iterations):
        calls.append((current.shape, iteration, iterations))
        last[:] = current

    last = np.zeros((len(x), 2), np.float32)
    xy = embed(x, random_state=3, early_iter=50, n_iter=100, callback=record)
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy, embed(x, random_state=3, early_iter=50, n_iter=100))
    with monkeypatch.context() as patch:  # each point is placed alone: chunks only bound memory
        patch.setattr(embed_module, "PLACE_CHUNK", 10_000)
        np.testing.assert_array_equal(xy, embed(x, random_state=3, early_iter=50, n_iter=100))
    # points of one cluster land together: their 10 map neighbours share the cluster
    assert knn_agreement(xy, labels, k=10) >= 0.9
    # the callback sees all N points: the sample's optimisation, its final map, 4 chunks
    assert {shape for shape, _, _ in calls} == {(len(x), 2)}
    steps = [iteration for _, iteration, _ in calls]
    assert steps == [50, 100, 150, 150, 151, 152, 153, 154] and calls[-1][2] == 154
    np.testing.assert_array_equal(last, xy)


def test_sample_keyword_forces_either_path(small_large, monkeypatch):
    x, _ = separated_clusters(n=1200)
    assert embed_module._sample_size(None, 1200, "opentsne") == 400
    assert embed_module._sample_size(None, 1000, "opentsne") == 1000  # not above LARGE
    assert embed_module._sample_size(None, 1200, "sklearn") == 1200  # no transform there
    assert embed_module._sample_size(0, 1200, "opentsne") == 1200
    assert embed_module._sample_size(False, 1200, "opentsne") == 1200
    assert embed_module._sample_size(5000, 1200, "opentsne") == 1200
    assert embed_module._sample_size(np.int64(300), 1200, "opentsne") == 300
    calls = []
    real = embed_module._tsne_opentsne
    monkeypatch.setattr(
        embed_module, "_tsne_opentsne", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    embed(x, sample=0, early_iter=10, n_iter=10)
    assert calls == [1]
    for bad in (-1, 2.5, "all", True, 50):
        with pytest.raises(ValueError, match="sample must be"):
            embed(x, sample=bad)
    with pytest.raises(ValueError, match="needs openTSNE"):
        embed(x, sample=300, backend="sklearn")


def test_neighbour_agreement_of_a_map_with_itself_and_a_shuffle():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(2000, 2)).astype(np.float32)
    assert embed_module.neighbour_agreement(xy, xy, k=10) == 1.0
    shuffled = embed_module.neighbour_agreement(xy, xy[rng.permutation(2000)], k=10)
    assert shuffled == pytest.approx(10 / 1999, abs=0.002)  # chance: k / (N - 1)
    wide = np.concatenate([xy, 0.01 * rng.normal(size=(2000, 6))], axis=1)
    assert embed_module.neighbour_agreement(xy, wide, k=5) > 0.9  # widths may differ
    rows = np.arange(0, 2000, 7)
    subset = embed_module.neighbour_agreement(xy, wide, k=5, rows=rows)
    found, _ = neighbours(xy, k=5, query=rows)
    expected, _ = neighbours(wide, k=5, query=rows)
    shared = [len(set(a) & set(b)) / 5 for a, b in zip(found, expected, strict=True)]
    assert subset == pytest.approx(np.mean(shared))
    with pytest.raises(ValueError, match="same points"):
        embed_module.neighbour_agreement(xy, xy[:10])
    with pytest.raises(ValueError, match="k must be"):
        embed_module.neighbour_agreement(xy, xy, k=0)


# ----------------------------------------------------------- neighbours ----


def brute_force(x: np.ndarray, q: np.ndarray, k: int, metric: str, exclude=None):
    """Every distance in float64, then a stable sort: ties go to the lower index."""
    x, q = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        dist = 1.0 - qn @ xn.T
    else:
        dist = np.sqrt(((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    if exclude is not None:
        dist[np.arange(len(q)), exclude] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_neighbours_equal_brute_force(feats, metric):
    x = feats[:600]
    idx, dist = neighbours(x, k=10, metric=metric)
    expected, expected_dist = brute_force(x, x, 10, metric, exclude=np.arange(len(x)))
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-5, atol=1e-5)
    assert not (idx == np.arange(len(x))[:, None]).any()  # never itself


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_neighbours_of_queries(feats, metric):
    rows = [7, 1500, 0]
    idx, dist = neighbours(feats, k=5, metric=metric, query=rows)
    expected, expected_dist = brute_force(feats, feats[rows], 5, metric, exclude=rows)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(dist, expected_dist, rtol=1e-5, atol=1e-5)
    one, _ = neighbours(feats, k=5, metric=metric, query=7)
    np.testing.assert_array_equal(one, expected[:1])
    new = feats[:4] + 0.01  # new vectors: nothing is excluded
    idx, _ = neighbours(feats, k=3, metric=metric, query=new)
    np.testing.assert_array_equal(idx, brute_force(feats, new, 3, metric)[0])


def test_neighbours_ties_zero_rows_and_blocks():
    x = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [0, 0]], dtype=np.float32)
    idx, dist = neighbours(x, k=4, block_rows=2)
    np.testing.assert_array_equal(idx[0], [5, 1, 2, 3])  # ties: lower index first
    np.testing.assert_allclose(dist[0], [0, 1, 1, 1])
    idx, dist = neighbours(x, k=2, metric="cosine")
    np.testing.assert_allclose(dist[0], [1, 1])  # an all-zero row is at distance 1


def test_knn_agreement_simple():
    points = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    assert knn_agreement(points, [0, 0, 0, 1, 1, 1], k=2) == 1.0
    assert knn_agreement(points, [0, 1, 0, 1, 0, 1], k=2) == pytest.approx(1 / 3)


# ------------------------------------------------------------- errors ----


def test_nan_features_name_the_rows(feats):
    bad = np.array(feats[:50])
    bad[[3, 17], 0] = np.nan
    bad[20, 5] = np.inf
    for call in (embed, lambda f: embed(f, "pca"), neighbours):
        with pytest.raises(ValueError, match=r"NaN or inf in 3 of 50 rows \(rows 3, 17, 20\)"):
            call(bad)


def test_bad_choices_and_shapes(feats):
    with pytest.raises(ValueError, match="Unknown method 'umap'; choose one of: 'tsne', 'pca'"):
        embed(feats, "umap")
    with pytest.raises(ValueError, match=r"Unknown metric 'manhattan'.*'euclidean', 'cosine'"):
        neighbours(feats, metric="manhattan")
    with pytest.raises(ValueError, match=r"Unknown backend 'cuml'.*'opentsne', 'sklearn'"):
        embed(feats, backend="cuml")
    with pytest.raises(ValueError, match=r"2-D \(N, D\).*shape \(128,\)"):
        embed(feats[0])
    with pytest.raises(ValueError, match="at least 1 row"):
        neighbours(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.9"):
        neighbours(feats[:10], k=10)
    with pytest.raises(ValueError, match="query index 5000 is out of range"):
        neighbours(feats, query=5000)
    with pytest.raises(ValueError, match="query has 3 columns but features have 128"):
        neighbours(feats, query=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"labels must have shape \(1797,\)"):
        knn_agreement(feats, [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embed(np.ascontiguousarray(feats[:40]), "pca")  # read-only input: no torch warning


def test_annoy_neighbours_for_large_maps(digits, feats, monkeypatch):
    x = pca(feats[:800], 20)
    found, dist = embed_module._annoy_knn(x, 15, n_jobs=2, seed=0)
    exact, exact_dist = neighbours(x, k=15)
    assert not (found == np.arange(len(x))[:, None]).any()
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(found, exact, strict=True)])
    assert recall > 0.9
    np.testing.assert_allclose(np.sort(dist, axis=1)[:, 0], exact_dist[:, 0], rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(embed_module, "EXACT_KNN_MAX", 100)  # take the Annoy path
    xy = embed(feats[:800], random_state=1)
    np.testing.assert_array_equal(xy, embed(feats[:800], random_state=1))
    assert knn_agreement(xy, digits[3][:800]) > 0.9


def test_pca_of_few_wide_rows_equals_exact_svd():
    # a small image folder through AlexNet's FC7: fewer images than dimensions
    x = np.random.default_rng(0).normal(size=(40, 4096)).astype(np.float32)
    centred = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    got = pca(x, 3)
    np.testing.assert_allclose(np.abs(got), np.abs(centred @ vt[:3].T), rtol=1e-3, atol=1e-3)


def test_weights_fingerprint_of_a_model_with_batchnorm():
    import torchvision

    from cnnviz_widgets.inspect.dataset import weights_fingerprint

    model = torchvision.models.resnet18(weights=None)
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    model.bn1.num_batches_tracked += 1  # a 0-d buffer
    after = weights_fingerprint(model)
    assert after != before
    model.bn1.running_mean[0] += 1
    assert weights_fingerprint(model) != after
