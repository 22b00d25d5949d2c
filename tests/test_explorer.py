"""CNNExplorer from Python: its child views, the links between them, the kernel view."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torchvision
import traitlets
from ipywidgets.widgets.widget import _instances
from torch import nn

from cnnviz_widgets import CNNExplorer, render
from cnnviz_widgets.demo import load_demo
from cnnviz_widgets.inspect import capture, class_probabilities
from cnnviz_widgets.inspect.layers import default_layer, kernel_of
from cnnviz_widgets.widgets._base import Widget
from cnnviz_widgets.widgets._layers import layer_choices


@pytest.fixture(scope="module")
def demo():
    return load_demo(split="test")


@pytest.fixture(scope="module")
def explorer(demo):
    model, dataset, classes = demo
    x = CNNExplorer(model, dataset, classes, progress=False)
    x.wait()
    return x


CHILDREN = ("embedding", "feature_maps", "occlusion", "top_patches", "filters")


def test_the_explorer_is_composed_of_child_widgets(demo):
    model, dataset, classes = demo
    before = set(_instances)
    x = CNNExplorer(model, dataset, classes, progress=False)
    x.wait()
    new = {k: _instances[k] for k in set(_instances) - before}
    kids = [getattr(x, name) for name in CHILDREN]
    # each view is its own widget model, with its own comm; the explorer references them
    assert all(k.comm is not None and new.get(k.model_id) is k for k in kids)
    state = x.get_state()
    assert [state[name] for name in CHILDREN] == [f"IPY_MODEL_{k.model_id}" for k in kids]
    # the explorer syncs its children and its own few traits, no copy of theirs
    own = {"tab", "selected_info", "kernel_png", "kernel_grid", "kernel_caption", "title"}
    base = set(Widget.class_traits(sync=True)) | {"_esm", "_css", "_anywidget_id"}
    assert set(x.keys) - base == own | set(CHILDREN)
    # each selection lives in one owner (the top patches follow the feature maps)
    for name, owner in [
        ("selected_index", x.embedding), ("layer", x.feature_maps),
        ("selected_channel", x.feature_maps), ("target", x.occlusion),
    ]:  # fmt: skip
        assert name not in state and getattr(x, name) == getattr(owner, name)
    x.close()
    assert all(k.comm is None for k in kids), "closing the explorer closes its views"


def test_a_selection_updates_every_view(explorer, demo):
    model, dataset, _ = demo
    explorer.selected_index = 42
    explorer.wait()
    image = dataset[42][0]
    assert explorer.embedding.selected_index == 42
    want = capture(model, image, explorer.layer)[explorer.layer][0].numpy()
    np.testing.assert_array_equal(explorer.feature_maps.activations, want)
    probs = class_probabilities(model, image)
    assert explorer.target == int(np.argmax(probs)) == explorer.occlusion.target
    top = [t["index"] for t in explorer.occlusion.top_classes]
    assert top == list(np.argsort(-probs, kind="stable")[:5])
    info = explorer.selected_info
    assert info["index"] == 42 and info["label"] == dataset[42][1]
    assert info["predicted"] == int(np.argmax(probs))
    assert explorer.occlusion.result.scores.shape == (16, 16)  # 32 px, stride 2, centred


def test_the_browser_drives_each_view_through_its_own_model(explorer, demo):
    # what the browser sends: each view's own model's traits, bytes as memoryview
    explorer.embedding.set_state({"selected_index": 7})
    assert explorer.selected_index == 7
    image = demo[1][7][0]
    np.testing.assert_array_equal(explorer.occlusion.image, image)
    explorer.feature_maps.set_state({"selected_channel": 11})  # a click on a feature map
    assert explorer.selected_channel == 11 == explorer.top_patches.selected_channel
    assert 11 in explorer.top_patches.channels
    explorer.top_patches.set_state({"selected_index": 99})  # a click on a patch
    assert explorer.selected_index == 99 == explorer.embedding.selected_index
    explorer.embedding.set_state({"selected_index": -1})  # the map's selection cleared
    assert explorer.selected_index == 99 and explorer.selected_info["index"] == 99
    explorer.occlusion.set_state({"target": 3})  # a click on a class's bar
    assert explorer.target == 3 == explorer.occlusion.target
    explorer.feature_maps.set_state({"layer": "conv2"})  # the frame's layer picker
    assert explorer.layer == "conv2" == explorer.top_patches.layer
    lasso = {"dtype": "int32", "shape": [3], "buffer": memoryview(np.array([1, 2, 3], "<i4"))}
    explorer.embedding.set_state({"selected_indices": lasso})  # as the browser sends it
    assert list(explorer.embedding.selection) == [1, 2, 3]
    with pytest.raises(traitlets.TraitError, match="out of range"):
        explorer.target = 99  # from Python: the view's own error
    with pytest.raises(traitlets.TraitError, match=r"out of range 0\.\.") as err:
        explorer.selected_index = len(demo[1])
    assert explorer.target == 3 and explorer.selected_index == 99, err
    explorer.layer = "relu3"
    explorer.wait()


def test_observing_a_selection_observes_its_owner(explorer):
    seen = []
    explorer.observe(seen.append, names=["selected_index", "selected_channel", "title"])
    explorer.selected_index = 12
    explorer.selected_channel = 4
    explorer.title = "t"
    explorer.unobserve(seen.append, names=["selected_index", "selected_channel", "title"])
    explorer.selected_index = 13
    explorer.wait()
    assert [(c["name"], c["new"]) for c in seen] == [
        ("selected_index", 12), ("selected_channel", 4), ("title", "t")
    ]  # fmt: skip
    assert seen[0]["owner"] is explorer.embedding


def test_layer_and_channel_reach_feature_maps_patches_and_kernel(explorer, demo):
    model = demo[0]
    explorer.layer = "conv2"
    assert explorer.feature_maps.layer == explorer.top_patches.layer == "conv2"
    assert explorer.feature_maps.activations.shape[0] == 32
    explorer.selected_channel = 5
    tiles = render.kernel_tiles(model.conv2.weight.detach().numpy()[5:6], max_channels=64)
    atlas = render.decode_png(explorer.kernel_png)
    rows, cols = explorer.kernel_grid
    assert (rows, cols) == (2, 8)  # 16 input channels of 3x3
    for t in range(16):  # each 3x3 kernel drawn 4x, one white pixel apart
        r, c = divmod(t, cols)
        shown = atlas[r * 13 : r * 13 + 12 : 4, c * 13 : c * 13 + 12 : 4]
        np.testing.assert_array_equal(shown, tiles[t])
        assert (atlas[r * 13 + 12, c * 13 : c * 13 + 13] == 255).all()
    assert explorer.kernel_caption.startswith("kernel of channel 5 · 16×3×3")
    explorer.layer = "relu3"  # made by conv3
    assert "made by conv3" in explorer.kernel_caption
    explorer.selected_channel = -1
    assert explorer.kernel_png == b""


def test_fast_selections_end_on_the_last_one_with_bounded_memory(explorer, demo):
    model, dataset, _ = demo
    explorer.selected_index = 0
    explorer.wait()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in np.random.default_rng(0).choice(len(dataset), 60, replace=False):
        explorer.selected_index = int(i)
    last = int(i)
    explorer.wait()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 20e6, f"{grown / 1e6:.1f} MB kept after 60 selections"
    assert explorer.selected_index == last == explorer.embedding.selected_index
    image = dataset[last][0]
    want = capture(model, image, explorer.layer)[explorer.layer][0].numpy()
    np.testing.assert_array_equal(explorer.feature_maps.activations, want)
    assert len(explorer.occlusion.results) == len(explorer.occlusion.schedule())
    assert explorer.occlusion.results[-1].target == explorer.target


def test_bad_input_is_refused(demo):
    model, dataset, classes = demo
    with pytest.raises(TypeError, match="map-style dataset"):
        CNNExplorer(model, torch.utils.data.DataLoader(dataset), classes, progress=False)
    with pytest.raises(ValueError, match="empty"):
        CNNExplorer(model, torch.utils.data.Subset(dataset, []), classes, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        CNNExplorer(model, dataset, classes, selected_index=len(dataset), progress=False)
    with pytest.raises(ValueError, match="class names"):
        CNNExplorer(model, dataset, classes[:3], progress=False)
    with pytest.raises(ValueError, match="nope"):
        CNNExplorer(model, dataset, classes, layer="nope", progress=False)


@pytest.mark.parametrize(
    "name, size, want",
    [
        ("resnet18", 224, "layer3"),  # layer4's field is 435 px: larger than the image
        ("resnet18", 448, "layer4"),
        ("alexnet", 224, "features.11"),
        ("vgg11", 224, "features.19"),
    ],
)
def test_default_layer_is_the_deepest_post_activation_map_whose_field_fits(name, size, want):
    model = getattr(torchvision.models, name)(weights=None).eval()
    choices = layer_choices(model, torch.zeros(3, size, size))
    assert default_layer(model, choices) == want
    facts = {c["name"]: c for c in choices}
    assert facts[want]["kind"] == "post-activation" and facts[want]["fits"]


def test_default_layer_of_the_demo(demo):
    model, dataset, _ = demo
    assert default_layer(model, layer_choices(model, dataset[0][0])) == "relu3"


def test_kernel_of_walks_back_to_the_conv_that_made_the_channels():
    model = torchvision.models.resnet18(weights=None)
    assert kernel_of(model, "layer4", 512)[0] == "layer4.1.conv2"
    assert kernel_of(model, "layer1.0.relu", 64)[0] == "layer1.0.conv1"  # its first call
    assert kernel_of(model, "conv1", 64)[0] == "conv1"
    assert kernel_of(nn.Sequential(nn.ReLU()), "0", 3) is None


def test_model_classes_differ_from_the_dataset_classes(demo):
    # a 10-way model on a folder with two classes (a pretrained ImageNet model on your own)
    model, dataset, classes = demo
    two = [i for i in range(len(dataset)) if dataset[i][1] in (0, 1)][:40]
    subset = torch.utils.data.Subset(dataset, two)
    x = CNNExplorer(model, subset, ["zero", "one"], progress=False)
    x.wait()
    assert x.occlusion.class_names == [f"class {i}" for i in range(10)]
    assert x.embedding.class_names == ["zero", "one"]
    names = [f"digit {c}" for c in classes]
    y = CNNExplorer(model, subset, ["zero", "one"], model_classes=names, progress=False)
    y.wait()
    assert y.occlusion.class_names == names
    pred = y.selected_info["predicted"]
    assert y.selected_info["predicted_name"] == names[pred]
    assert y.selected_info["label_name"] in ("zero", "one")


def test_a_torchvision_resnet_with_batchnorm_works_end_to_end():
    # the real-user path: a torchvision model (weights=None offline) on an image dataset
    model = torchvision.models.resnet18(weights=None).eval()
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(12, 3, 64, 64, generator=g), torch.arange(12) % 3
    )
    x = CNNExplorer(model, data, ["a", "b", "c"], layer="layer4", progress=False)
    x.wait()
    assert x.layer == "layer4" and x.feature_maps.activations.shape == (512, 2, 2)
    x.selected_index = 4
    x.selected_channel = 7
    x.wait()
    assert x.kernel_caption.startswith("kernel of channel 7 (made by layer4.1.conv2) · 512×3×3")
    assert x.occlusion.class_names[:2] == ["class 0", "class 1"]  # 1000 outputs, 3 labels
    assert x.top_patches.top.channels == 512
    assert not model.training


def test_one_dataset_pass_feeds_the_map_and_the_top_patches(demo, monkeypatch):
    import cnnviz_widgets.inspect.dataset as dataset_module
    from cnnviz_widgets import top_activations
    from cnnviz_widgets.inspect.features import feature_pass

    model, dataset, classes = demo
    subset = torch.utils.data.Subset(dataset, range(100))  # a dataset no cache has seen
    passes = []
    real = dataset_module.dataset_pass

    def counted(*args, **kwargs):
        passes.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "dataset_pass", counted)
    x = CNNExplorer(model, subset, classes, progress=False)
    x.wait()
    assert passes == ["features + top activations"]
    monkeypatch.setattr(dataset_module, "dataset_pass", real)
    alone = feature_pass(model, subset, cache=False, progress=False)
    np.testing.assert_array_equal(x.embedding.features.features, alone.features)
    top = top_activations(model, subset, [x.layer], 9, cache=False, progress=False)[x.layer]
    np.testing.assert_array_equal(x.top_patches.top.values, top.values)
    np.testing.assert_array_equal(x.top_patches.top.indices, top.indices)
