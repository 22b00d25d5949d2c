"""EmbeddingExplorer: what the browser receives, against the model and brute force."""

import numpy as np
import pytest
import torch
import traitlets

from cnnviz_widgets import EmbeddingExplorer, embed, export, render
from cnnviz_widgets.inspect.embedding import grid_layout
from cnnviz_widgets.inspect.regions import find_regions


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
    points = view.points
    expect = render.unit_square(embed(feats, method="tsne", random_state=0))
    np.testing.assert_allclose(points, expect, atol=1e-3)
    assert np.abs(points).max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(view.labels, dataset.targets)
    predicted = view.predictions
    np.testing.assert_array_equal(predicted, model(x).argmax(1).numpy())
    assert view.caption == "360 images · input of fc · 128 features"


def test_selection_shows_the_brute_force_neighbours(view):
    feats = view.features.features.astype(np.float64)
    view.selected_index = 17
    d = np.linalg.norm(feats - feats[17], axis=1)
    d[17] = np.inf
    expect = np.argsort(d, kind="stable")[: view.k]
    np.testing.assert_array_equal(view.neighbour_indices, expect)
    np.testing.assert_allclose(view.neighbour_distances, d[expect], rtol=1e-5)
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
    sent = {"dtype": "int32", "shape": [3], "buffer": memoryview(chosen.tobytes())}  # writeArray
    view.set_state({"selected_indices": sent})
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


class NoLabels(torch.utils.data.Dataset):
    """The dataset's images without their labels (-1: unknown)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i][0], -1


def model_predictions(model, dataset) -> np.ndarray:
    with torch.no_grad():
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        return model(x).argmax(1).numpy()


def test_unlabelled_points_are_coloured_by_their_prediction(digits):
    model, dataset, classes = digits
    view = EmbeddingExplorer(model, NoLabels(dataset), classes, method="pca", progress=False)
    view.wait(120)
    assert (view.labels == -1).all()
    colour, predicted = view.point_colors
    np.testing.assert_array_equal(colour, model_predictions(model, dataset))
    assert predicted.all()  # what the legend marks as predictions (lib/legend.js)
    # the PNG draws every point in a class colour: none in the gray of unknown classes
    image = export.embedding_image(view)
    assert not (image == render.hex_rgb("#8c8c8c")).all(axis=-1).any()
    view.color_by = "label"
    assert (view.point_colors[0] == -1).all() and not view.point_colors[1].any()
    view.close()


def test_labels_win_over_predictions(digits, view):
    model, dataset, _ = digits
    colour, predicted = view.point_colors
    np.testing.assert_array_equal(colour, dataset.targets)
    assert not predicted.any()
    wrong = model_predictions(model, dataset) != np.asarray(dataset.targets)
    assert wrong.any()  # there are points where the two differ: the label is drawn
    view.color_by = "prediction"
    try:
        np.testing.assert_array_equal(view.point_colors[0], model_predictions(model, dataset))
        assert view.point_colors[1].all()
    finally:
        view.color_by = "auto"


def test_model_classes_name_the_predictions_in_the_same_colours(digits):
    model, dataset, classes = digits
    two = torch.utils.data.Subset(dataset, [i for i in range(120) if dataset.targets[i] < 2])
    names = ["zero", "one", *(f"digit {c}" for c in classes[2:])]
    view = EmbeddingExplorer(
        model, two, ["zero", "one"], model_classes=names, method="pca", progress=False
    ).wait(120)
    assert view.class_names == names  # "zero", "one" shared: a prediction and a label match
    assert len(view.class_colors) == len(names)
    np.testing.assert_array_equal(view.predictions, model_predictions(model, two))
    other = [f"model {c}" for c in range(10)]  # no name shared: the model's names follow
    view2 = EmbeddingExplorer(
        model, two, ["zero", "one"], model_classes=other, method="pca", progress=False
    ).wait(120)
    assert view2.class_names == ["zero", "one", *other]
    np.testing.assert_array_equal(view2.predictions, 2 + model_predictions(model, two))
    view.close()
    view2.close()


def test_show_regions_names_the_final_map(digits, view):
    assert view.regions == [] and view.point_regions.size == 0  # not asked for yet
    view.show_regions = True
    view.wait(120)
    points = render.unit_square(view.xy)
    found, member = find_regions(points, view.predictions, view.class_names)
    assert [r["name"] for r in view.regions] == [r.name for r in found]
    assert len(found) >= 8  # the digits' t-SNE map: about one region per digit
    np.testing.assert_array_equal(view.point_regions, member)
    for r, region in enumerate(found):
        np.testing.assert_array_equal(view.region_indices(r), region.indices)
        shown = view.regions[r]
        assert shown["typical"] == region.typical and shown["medoid"] == region.medoid
        assert shown["size"] == len(region.indices)
    print("digits regions:", [r["name"] for r in view.regions])


def test_every_photo_is_coloured(capsys):
    pytest.importorskip("timm", reason="the photo demo needs its extra")
    from cnnviz_widgets.demo import load_photos

    model, photos, classes = load_photos()
    view = EmbeddingExplorer(
        model, photos, classes, method="pca", progress=False, show_regions=True
    ).wait(600)
    labels = view.labels
    colour, predicted = view.point_colors
    share = (colour >= 0).mean()
    with capsys.disabled():
        print(
            f"\nphotos: {share:.0%} of {len(colour)} points coloured "
            f"({(labels >= 0).sum()} by label, {predicted.sum()} by prediction); "
            f"regions: {[r['name'] for r in view.regions]}"
        )
    assert share == 1.0 and predicted.sum() == (labels < 0).sum()
    view.close()


def test_regions_follow_a_new_map(digits):
    model, dataset, classes = digits
    view = EmbeddingExplorer(model, NoLabels(dataset), classes, method="pca", progress=False)
    view.show_regions = True  # asked for during the pass: found once the map is final
    view.wait(120)
    pca_regions = view.regions
    assert pca_regions and view.status == "PCA map"
    view.method = "tsne"
    assert view.regions == [] and view.point_regions.size == 0  # the old map's regions go at once
    view.wait(120)
    predicted = model_predictions(model, dataset)  # no labels: named by the predictions
    found, member = find_regions(render.unit_square(view.xy), predicted, classes)
    assert [r["name"] for r in view.regions] == [r.name for r in found] != []
    np.testing.assert_array_equal(view.point_regions, member)
    view.close()
