"""TopPatches: the pages the browser receives, against the top-k pass and a direct forward."""

import numpy as np
import pytest
import torch

from cnnviz_widgets import render
from cnnviz_widgets.widgets.patches import TopPatches


@pytest.fixture(scope="module")
def view(demo):
    model, dataset, classes = demo
    return TopPatches(model, dataset, "relu3", k=4, classes=classes, progress=False).wait()


def test_page_holds_each_channels_best_images_and_their_patches(demo, view):
    model, dataset, _ = demo
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        act = model.relu3(model.conv3(model.pool2(model.relu2(model.conv2(
            model.pool1(model.relu1(model.conv1(x))))))))  # fmt: skip
    best = act.flatten(2).amax(dim=2)  # (N, C): each image's best unit per channel
    rows, values, indices, labels = view.channels, view.values, view.indices, view.labels
    assert values.shape == indices.shape == labels.shape == (len(rows), view.k)
    assert list(rows) == list(range(8)) and view.grid_shape == [8, 4]
    for row, c in enumerate(rows):
        expect = torch.sort(best[:, c], descending=True, stable=True)
        np.testing.assert_allclose(values[row], expect.values[: view.k].numpy(), rtol=1e-6)
        if expect.values[view.k - 1] > expect.values[view.k]:  # no tie at the cut
            assert set(indices[row]) == set(expect.indices[: view.k].tolist())
        assert list(labels[row]) == [int(dataset.targets[i]) for i in indices[row]]
    atlas = render.decode_png(view.atlas_png)
    for row, r in [(0, 0), (3, 2), (7, 3)]:
        tile = render.unpack_tile(atlas, row * view.k + r, view.tile_shape, view.k)
        c = int(rows[row])
        crop = view.top.patch(c, r, crop="effective")  # the unit's effective field
        np.testing.assert_array_equal(tile, render.fit_into([crop], (18, 18))[0])
        (box,) = view.top.effective_boxes(None, [(c, r)])  # the cache the page filled
        field = view.top.box(c, r)
        assert field[0] <= box.box[0] <= box.box[1] <= field[1]  # inside the geometric field
    assert view.tile_shape == [18, 18]  # conv3's receptive field in the demo CNN


def test_sorting_paging_and_selection(view):
    top = view.top.values
    view.sort_by = "max"
    expect = sorted(range(len(top)), key=lambda c: (-top[c, 0], c))
    assert list(view.channels) == expect[:8]
    target = expect[20]
    view.selected_channel = target  # from Python (or a linked FeatureMaps): turn to its page
    assert view.page == 2 and target in view.channels
    assert f"page 3/{view.n_pages}" in view.caption
    view.sort_by = "index"
    view.page = 0


def test_layer_change_reranks_and_layer_picker_describes_fields(view):
    labels = {o["name"]: o["label"] for o in view.layer_options}
    assert labels["conv3"] == "conv3 · 64×8×8 · linear · stride 4 · RF 18 px, 56% of 32"
    assert labels["relu3"] == "relu3 · 64×8×8 · post-activation · stride 4 · RF 18 px, 56% of 32"
    assert "fc1" not in labels
    view.layer = "conv1"
    view.wait()
    assert view.top.layer == "conv1" and view.tile_shape == [3, 3] and view.n_pages == 2
    view.layer = "relu3"
    view.wait()


def test_bad_requests_explain_themselves(demo):
    model, dataset, _ = demo
    with pytest.raises(ValueError, match=r"'fc1'.*no spatial output, so it has no receptive field"):
        TopPatches(model, dataset, "fc1", progress=False)
    with pytest.raises(ValueError, match=r"k=400 is larger than the dataset \(360 images\)"):
        TopPatches(model, dataset, "conv2", k=400, progress=False)
