"""Widget state as the browser receives it: decoded atlases against independent maths."""

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers
from torchvision.models import alexnet, resnet18

from cnnviz_widgets import FeatureMaps, FilterGrid, render


def _scaled(w, axes):
    """Min-max to 0..255 the way the docs describe it, written out independently."""
    lo, hi = w.min(axis=axes, keepdims=True), w.max(axis=axes, keepdims=True)
    return np.round((w - lo) / (hi - lo) * 255).astype(np.uint8)


def test_alexnet_conv1_tiles_are_the_weights_per_filter_normalised():
    model = alexnet(weights=None)
    grid = FilterGrid(model)
    w = model.features[0].weight.detach().numpy()  # 64x3x11x11
    assert grid.layer == "features.0" and grid.mode == "filters"
    assert (grid.n_tiles, grid.tile_shape, grid.grid_shape) == (64, [11, 11], [8, 8])
    expect = _scaled(w, (1, 2, 3)).transpose(0, 2, 3, 1)
    for k in (0, 17, 63):
        np.testing.assert_array_equal(grid.tile(k), expect[k])


def test_resnet_conv1_global_normalisation():
    model = resnet18(weights=None)
    grid = FilterGrid(model, "conv1", normalize="global")
    w = model.conv1.weight.detach().numpy()  # 64x3x7x7
    expect = _scaled(w, None).transpose(0, 2, 3, 1)
    assert grid.tile_shape == [7, 7]
    np.testing.assert_array_equal(grid.tile(5), expect[5])
    grid.normalize = "filter"
    np.testing.assert_array_equal(grid.tile(5), _scaled(w, (1, 2, 3)).transpose(0, 2, 3, 1)[5])


def test_deeper_kernels_are_one_grayscale_tile_per_input_channel(demo):
    model, _, _ = demo
    grid = FilterGrid(model, model.conv2)
    w = model.conv2.weight.detach().numpy()  # 32x16x3x3
    assert grid.mode == "channels" and grid.grid_shape == [32, 16]
    expect = _scaled(w, (1, 2, 3))
    for f, c in [(0, 0), (3, 7), (31, 15)]:
        np.testing.assert_array_equal(grid.tile(f * 16 + c), expect[f, c])


def test_large_layers_are_capped_and_say_so():
    grid = FilterGrid(resnet18(weights=None), "layer4.0.conv1", max_filters=8, max_channels=4)
    assert (grid.n_filters, grid.n_channels_shown, grid.n_tiles) == (8, 4, 32)
    assert "512 filters 256×3×3 (showing 8×4)" in grid.caption


def test_filter_grid_refuses_a_layer_that_is_not_a_conv(demo):
    model, _, _ = demo
    with pytest.raises(ValueError, match=r"'pool1' is a MaxPool2d.*conv1, conv2, conv3"):
        FilterGrid(model, "pool1")


def test_feature_map_tiles_are_the_activations(demo):
    model, dataset, _ = demo
    x = dataset[3][0]
    maps = FeatureMaps(model, x, layer="relu2")
    with torch.no_grad():
        act = model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(x[None])))))[0].numpy()
    assert (maps.n_tiles, maps.tile_shape) == (32, [16, 16])
    expect = _scaled(act, None)
    for c in (0, 9, 31):
        np.testing.assert_array_equal(maps.tile(c), expect[c])
    np.testing.assert_allclose(maps.channel_max, act.max(axis=(1, 2)))
    np.testing.assert_allclose(maps.channel_mean, act.mean(axis=(1, 2)), rtol=1e-5)
    maps.normalize = "channel"
    live = [c for c in range(32) if np.ptp(act[c]) > 0]
    np.testing.assert_array_equal(maps.tile(live[0]), _scaled(act[live[0]], None))


def test_changing_layer_image_and_colormap_updates_the_view(demo):
    model, dataset, _ = demo
    maps = FeatureMaps(model, dataset[0][0], layer="conv3")
    maps.selected_channel = 40
    first = maps.atlas_png
    maps.image = dataset[1][0]
    assert maps.atlas_png != first
    maps.layer = "conv1"
    assert (maps.n_tiles, maps.tile_shape) == (16, [32, 32])
    assert maps.selected_channel == -1  # channel 40 does not exist in conv1
    maps.colormap = "viridis"
    tile = maps.tile(0)
    assert tile.shape == (32, 32, 3)
    assert set(map(tuple, tile.reshape(-1, 3))) <= set(map(tuple, render.colormap_lut("viridis")))
    with pytest.raises(ValueError, match="Unknown layer 'conv7'"):
        maps.layer = "conv7"
    assert maps.layer == "conv1"


def test_bad_image_is_refused_and_the_old_one_kept(demo):
    model, dataset, _ = demo
    maps = FeatureMaps(model, dataset[0][0])
    with pytest.raises(ValueError, match=r"shape \(2, 32, 32\)"):
        maps.image = torch.zeros(2, 32, 32)
    assert maps.image is not None and maps.image.shape == (1, 32, 32)
    with pytest.raises(ValueError, match="one image"):
        FeatureMaps(model, torch.zeros(2, 1, 32, 32))


def test_arrays_travel_as_binary_buffers(demo):
    model, dataset, _ = demo
    widgets = {
        "feature maps": (FeatureMaps(model, dataset[0][0]), {"channel_max", "input_png"}),
        "filters": (FilterGrid(model), set()),
    }
    for widget, binary in widgets.values():
        state, paths, buffers = _remove_buffers(widget.get_state())
        travelled = {p[0] for p in paths}
        assert {"atlas_png", *binary} <= travelled
        assert all(isinstance(b, (bytes, memoryview)) for b in buffers)
        # nothing array-like left in the JSON part: only short lists (shapes) and short strings
        for key, value in state.items():
            if key.startswith("_"):  # the ES module source and widget bookkeeping
                continue
            assert not isinstance(value, list) or len(value) <= 4, key
            assert not isinstance(value, str) or len(value) < 500, key


def test_no_widget_shadows_an_ipywidgets_trait():
    # a trait named like one of DOMWidget's (`layout`, `tooltip`, ...) breaks every view
    import ipywidgets

    from cnnviz_widgets import EmbeddingExplorer, OcclusionMap, TopPatches

    base = ipywidgets.DOMWidget.class_traits()
    for cls in (FilterGrid, FeatureMaps, OcclusionMap, TopPatches, EmbeddingExplorer):
        ours = cls.class_traits()
        shadowed = [n for n in base if not n.startswith("_") and ours[n] is not base[n]]
        assert shadowed == [], f"{cls.__name__} redefines {shadowed}"
