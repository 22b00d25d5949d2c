"""EmbeddingExplorer: what the browser receives, against the model and brute force."""

import numpy as np
import pytest
import torch
import traitlets

from cnnviz_widgets import EmbeddingExplorer, embed, render
from cnnviz_widgets.inspect.embedding import grid_layout


@pytest.fixture(scope="module")
def digits():
    from cnnviz_widgets.demo import load_demo

    return load_demo(split="test")


@pytest.fixture(scope="module")
def view(digits):
    model, dataset, classes = digits
    return EmbeddingExplorer(model, dataset, classes, progress=False).wait()


def test_points_are_the_map_of_the_penultimate_features(digits, view):
    model, dataset, _ = digits
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        feats = model.features(x).numpy()
    np.testing.assert_allclose(view.features.features, feats, rtol=1e-5, atol=1e-5)
    points = np.frombuffer(view.points, "<f4").reshape(-1, 2)
    expect = render.unit_square(embed(feats, method="tsne", random_state=0))
    np.testing.assert_allclose(points, expect, atol=1e-3)
    assert np.abs(points).max() <= 1.0 + 1e-6
    labels = np.frombuffer(view.labels, "<i4")
    np.testing.assert_array_equal(labels, dataset.targets)
    predicted = np.frombuffer(view.predictions, "<i4")
    np.testing.assert_array_equal(predicted, model(x).argmax(1).numpy())
    assert view.caption == "360 images · input of fc · 128 features"


def test_selection_shows_the_brute_force_neighbours(view):
    feats = view.features.features.astype(np.float64)
    view.selected_index = 17
    d = np.linalg.norm(feats - feats[17], axis=1)
    d[17] = np.inf
    expect = np.argsort(d, kind="stable")[: view.k]
    np.testing.assert_array_equal(view.neighbour_indices, expect)
    np.testing.assert_allclose(np.frombuffer(view.neighbour_distances, "<f4"), d[expect], rtol=1e-5)
    view.selected_index = -1
    assert view.neighbour_indices.size == 0
    with pytest.raises(traitlets.TraitError, match=r"selected_index 360 is out of range -1\.\.359"):
        view.selected_index = 360


def test_thumbnails_are_the_dataset_images(digits, view):
    _, dataset, _ = digits
    page = render.decode_png(view.thumb_pages[0])
    for i in (0, 100, 359):
        thumb = render.unpack_tile(
            page, i % view.thumbs_per_page, view.thumb_shape, view.thumb_cols
        )
        np.testing.assert_array_equal(thumb, dataset.image(i))


def test_lasso_selection_arrives_as_binary(view):
    chosen = np.array([3, 5, 8], "<i4")
    view.set_state({"selected_indices": memoryview(chosen.tobytes())})
    np.testing.assert_array_equal(view.selection, chosen)


def test_grid_layout_gives_each_point_its_own_cell_in_map_order():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(50, 2)).astype(np.float32)
    cells = grid_layout(xy)
    assert len({tuple(c) for c in cells}) == 50 and cells[:, 0].max() == 7
    rows = cells[:, 1]
    assert all(xy[rows == r, 1].max() <= xy[rows == r + 1, 1].min() for r in range(6))


def test_labels_beyond_the_class_names_are_refused(digits):
    model, dataset, _ = digits
    # dataset.targets: refused at once
    with pytest.raises(ValueError, match=r"has label \d+, but there are 3 class names"):
        EmbeddingExplorer(model, dataset, ["a", "b", "c"], progress=False)
    # labels known only by reading the items: the pass finds them, the view says so
    items = torch.utils.data.Subset(dataset, range(60))
    with pytest.raises(ValueError, match=r"labels run from 0 to 9, but there are only 3 class"):
        EmbeddingExplorer(
            model, items, ["a", "b", "c"], method="pca", progress=False, background=False
        )
    # in the background (the default): wait() raises it, and the view says what failed
    view = EmbeddingExplorer(model, items, ["a", "b", "c"], method="pca", progress=False)
    with pytest.raises(ValueError, match=r"labels run from 0 to 9, but there are only 3 class"):
        view.wait(60)
    assert view.running is False and view.status.startswith("error: ValueError: labels run")
    view.close()
