"""The widgets open a batch job's store (`store=`): what they show equals what their own pass
shows, they run no pass over the dataset for what the store holds, and a store made with
another model or dataset is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnviz_widgets.inspect.dataset as dataset_module
from cnnviz_widgets import CNNExplorer, EmbeddingExplorer, TopPatches
from cnnviz_widgets.batch import StoreMismatchError, open_store, run_batch
from cnnviz_widgets.demo import DigitsCNN, load_demo

LAYER, K = "relu3", 5


def demo_model():
    return load_demo()[0]


def demo_data():
    return torch.utils.data.Subset(load_demo()[1], range(150))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    run_batch(demo_model, demo_data, out, [LAYER], K, engine="local", thumbnails=12,
              batch_size=64, block_size=64, progress=False)  # fmt: skip
    return out


@pytest.fixture
def no_pass(monkeypatch):
    """Any pass over the dataset fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a dataset pass ran: {kwargs.get('desc')}")

    monkeypatch.setattr(dataset_module, "dataset_pass", refuse)


def test_the_explorer_opens_a_store_and_shows_what_its_own_pass_shows(store, monkeypatch):
    model, dataset, classes = demo_model(), demo_data(), load_demo()[2]
    plain = CNNExplorer(model, dataset, classes, method="pca", top_k=K, progress=False)
    plain.wait()
    passes = []
    real = dataset_module.dataset_pass
    monkeypatch.setattr(dataset_module, "dataset_pass", lambda *a, **kw: passes.append(1))
    x = CNNExplorer(model, dataset, classes, method="pca", store=str(store), progress=False)
    x.wait()
    monkeypatch.setattr(dataset_module, "dataset_pass", real)
    assert passes == [] and x.layer == LAYER == plain.layer
    mine, theirs = x.embedding, plain.embedding
    np.testing.assert_allclose(mine.features.features, theirs.features.features, atol=1e-5)
    np.testing.assert_array_equal(mine.labels, theirs.labels)
    np.testing.assert_array_equal(mine.predictions, theirs.predictions)
    np.testing.assert_allclose(mine.points, theirs.points, atol=1e-4)  # the same PCA map
    assert len(mine.thumb_pages) > 0  # the store's thumbnails
    top, want = x.top_patches.top, plain.top_patches.top
    assert top.k == want.k == K
    np.testing.assert_allclose(top.values, want.values, atol=1e-5)
    np.testing.assert_array_equal(top.indices, want.indices)
    np.testing.assert_array_equal(x.top_patches.indices, plain.top_patches.indices)
    x.selected_index = 7  # a selection works as ever
    x.wait()
    assert x.selected_info["index"] == 7
    for each in (x, plain):
        each.close()


def test_a_layer_the_store_did_not_rank_is_ranked_by_a_pass(store):
    model, dataset = demo_model(), demo_data()
    tp = TopPatches(model, dataset, "conv2", 3, store=store, progress=False)
    tp.wait()
    want = dataset_module.top_activations(model, dataset, ["conv2"], 3, progress=False)["conv2"]
    np.testing.assert_array_equal(tp.top.indices, want.indices)
    tp.layer = LAYER  # the store's, read from it
    tp.wait()
    np.testing.assert_array_equal(tp.top.indices, open_store(store).top(LAYER, 3).indices)
    tp.close()


def test_a_store_of_another_model_or_dataset_is_refused(store, no_pass):
    torch.manual_seed(0)
    other = DigitsCNN().eval()  # the same architecture, other weights
    with pytest.raises(StoreMismatchError, match="model"):
        CNNExplorer(other, demo_data(), store=store, progress=False)
    fewer = torch.utils.data.Subset(load_demo()[1], range(149))
    with pytest.raises(StoreMismatchError, match="dataset"):
        EmbeddingExplorer(demo_model(), fewer, store=store, method="pca", progress=False)
    with pytest.raises(StoreMismatchError, match="dataset"):
        TopPatches(demo_model(), fewer, LAYER, store=open_store(store), progress=False)


def test_features_of_another_layer_are_refused_naming_both(store, no_pass):
    with pytest.raises(
        ValueError, match="holds the features of input of fc, not of 'conv3': leave layer= at its"
    ):
        EmbeddingExplorer(demo_model(), demo_data(), store=store, layer="conv3", method="pca")


def test_more_images_than_thumbnails_fit_are_mapped_without_them(monkeypatch):
    import cnnviz_widgets.widgets.embedding as embedding_module

    read = []
    real = embedding_module.display_image
    monkeypatch.setattr(embedding_module, "MAX_THUMBNAILS", 100)
    monkeypatch.setattr(embedding_module, "display_image", lambda *a: read.append(1) or real(*a))
    model, dataset = demo_model(), demo_data()  # 150 images
    w = EmbeddingExplorer(model, dataset, method="pca", display=lambda i: real(dataset, i))
    w.wait()
    assert w.thumb_pages == [] and read == [] and "no thumbnails over 100 images" in w.caption
    assert w.points.shape == (150, 2)  # the map itself is whole
    w.close()
