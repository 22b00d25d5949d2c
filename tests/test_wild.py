"""A user's worst day: a misspelled keyword, an item that cannot be read, a pass that fails."""

from __future__ import annotations

import ipywidgets
import pytest
from torch.utils.data import DataLoader, Dataset

from cnnviz_widgets import (
    CNNExplorer,
    EmbeddingExplorer,
    FeatureMaps,
    FilterGrid,
    OcclusionMap,
    TopPatches,
    extract_features,
    widgets,
)
from cnnviz_widgets.inspect.items import DatasetItemError
from cnnviz_widgets.widgets._base import Widget

BAD = 37


class Truncated(Dataset):
    """The demo digits, with item 37 a truncated image file."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        if i == BAD:
            raise OSError("image file is truncated (3 bytes not processed)")
        return self.dataset[i]


#: each widget class, what it needs before the keywords, a misspelled keyword, the one meant
MISSPELLED = {
    "FeatureMaps": (FeatureMaps, "image", "colourmap", "colormap"),
    "FilterGrid": (FilterGrid, None, "normalise", "normalize"),
    "OcclusionMap": (OcclusionMap, "image", "patchsize", "patch_size"),
    "TopPatches": (TopPatches, "dataset", "top_K", "k"),
    "EmbeddingExplorer": (EmbeddingExplorer, "dataset", "methd", "method"),
    "CNNExplorer": (CNNExplorer, "dataset", "Layer", "layer"),
}


def test_every_widget_class_is_checked():
    exported = {
        name
        for name in widgets.__all__
        if isinstance(getattr(widgets, name), type) and issubclass(getattr(widgets, name), Widget)
    }
    assert exported == set(MISSPELLED)


@pytest.mark.parametrize("name", sorted(MISSPELLED))
def test_a_misspelled_keyword_is_a_type_error_naming_the_closest_one(name, demo):
    cls, needs, wrong, meant = MISSPELLED[name]
    model, dataset, _ = demo
    args = {"image": (dataset[0][0],), "dataset": (dataset,), None: ()}[needs]
    message = f"{name} got an unexpected keyword '{wrong}'; did you mean '{meant}'?"
    with pytest.raises(TypeError) as err:
        cls(model, *args, **{wrong: 3})
    assert str(err.value) == message


def test_an_unknown_keyword_with_no_close_one_lists_what_the_widget_takes(demo):
    with pytest.raises(TypeError, match="'zzz'; it takes model, layer, normalize, max_filters"):
        FilterGrid(demo[0], zzz=1)


def test_traits_and_parameters_are_still_taken(demo):
    model, dataset, _ = demo
    layout = ipywidgets.Layout(width="300px")
    fm = FeatureMaps(model, dataset[0][0], layout=layout, tile_px=32, colormap="magma")
    assert (fm.layout.width, fm.tile_px, fm.colormap) == ("300px", 32, "magma")
    occ = OcclusionMap(model, dataset[0][0], patch_size=4, opacity=0.3, layout=layout)
    assert (occ.patch_size, occ.opacity) == (4, 0.3)
    occ.wait()
    occ.close()
    fm.close()


def test_an_item_that_cannot_be_read_is_named_with_its_index(demo):
    model, dataset, _ = demo
    bad = Truncated(dataset)
    with pytest.raises(DatasetItemError, match=r"dataset\[37\] failed: OSError: image file") as e:
        extract_features(model, bad, progress=False, cache=False)
    assert "Check dataset[37]" in str(e.value)
    assert isinstance(e.value.__cause__, OSError)
    # a DataLoader the user batches: the batch's range
    loader = DataLoader(bad, batch_size=32)
    with pytest.raises(DatasetItemError, match=r"one of dataset\[32\]..dataset\[63\]") as e:
        extract_features(model, loader, progress=False, cache=False)
    assert isinstance(e.value.__cause__, OSError)


def test_a_failed_shared_pass_ends_every_panel_that_waits_on_it(demo):
    model, dataset, classes = demo
    x = CNNExplorer(model, Truncated(dataset), classes, method="pca", progress=False)
    # at once, while the pass may still run: the top patches wait for it, then re-raise
    with pytest.raises(DatasetItemError, match=r"dataset\[37\]") as e:
        x.top_patches.wait(timeout=60)
    assert isinstance(e.value.__cause__, OSError)
    with pytest.raises(DatasetItemError, match=r"dataset\[37\]"):
        x.embedding.wait(timeout=60)
    with pytest.raises(DatasetItemError, match=r"dataset\[37\]"):
        x.wait(timeout=60)
    for panel in (x.top_patches, x.embedding):
        assert panel.running is False
        assert panel.status.startswith("error: DatasetItemError: Reading dataset[37] failed")
    assert x.top_patches.top is None
    x.close()


def test_a_failed_pass_before_returning_raises_naming_the_item(demo):
    model, dataset, classes = demo
    with pytest.raises(DatasetItemError, match=r"Check dataset\[37\]") as e:
        CNNExplorer(model, Truncated(dataset), classes, method="pca", background=False)
    assert isinstance(e.value.__cause__, OSError)


# ------------------------------------------- selections out of range, a closed explorer ----


def test_a_channel_the_layer_lacks_is_refused_and_the_selection_kept(demo):
    import traitlets
    from torch.utils.data import Subset

    model, dataset, classes = demo
    x = CNNExplorer(model, Subset(dataset, range(40)), classes, method="pca", progress=False)
    x.wait(60)
    x.selected_channel = 3
    for widget in (x, x.feature_maps, x.top_patches):
        with pytest.raises(
            traitlets.TraitError,
            match=r"selected_channel 10000 is out of range: "
            r"layer 'relu3' has channels 0\.\.63 \(-1: none\)",
        ):
            widget.selected_channel = 10000
        assert widget.selected_channel == 3
    x.selected_channel = -1  # none: always taken
    assert x.feature_maps.selected_channel == x.top_patches.selected_channel == -1
    x.close()
    maps = FeatureMaps(model, dataset[0][0], "conv1")
    with pytest.raises(traitlets.TraitError, match=r"channels 0\.\.15"):
        maps.selected_channel = 16
    assert maps.selected_channel == -1


def test_wait_on_a_closed_widget_returns_at_once(demo):
    import time

    from torch.utils.data import Subset

    model, dataset, classes = demo
    x = CNNExplorer(model, Subset(dataset, range(40)), classes, method="pca", progress=False)
    x.close()  # its work ends: nothing is left to wait for
    start = time.monotonic()
    assert x.wait() is x.occlusion.result  # the map done before, or None
    occ = OcclusionMap(model, dataset[0][0])
    occ.close()
    assert occ.wait() is occ.result
    assert time.monotonic() - start < 10


# ------------------------------------------------------------------ labels, classes ----


class Relabelled(Dataset):
    """The demo digits with each label `y` given as `relabel(y)`."""

    def __init__(self, dataset, relabel, n=40):
        self.dataset, self.relabel, self.n = dataset, relabel, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image, y = self.dataset[i]
        return image, self.relabel(y)


def _one_hot(y):
    import torch

    return torch.nn.functional.one_hot(torch.tensor(y), 10).float()


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LABELS = {
    "string": lambda y: WORDS[y],
    "float": float,
    "numpy float": lambda y: __import__("numpy").float32(y),
    "one-hot": _one_hot,
    "probabilities": lambda y: _one_hot(y) * 0.7 + 0.03,
}


@pytest.mark.parametrize("kind", list(LABELS))
def test_labels_of_every_kind_are_read_as_class_indices(kind, demo):
    import numpy as np

    model, dataset, _ = demo
    data = Relabelled(dataset, LABELS[kind])
    want = np.array([dataset[i][1] for i in range(len(data))])
    emb = EmbeddingExplorer(model, data, WORDS, method="pca", background=False)
    np.testing.assert_array_equal(emb.features.labels, want)
    top = TopPatches(model, data, "relu3", 3, classes=WORDS, background=False)
    np.testing.assert_array_equal(top.top.labels, want[top.top.indices])
    emb.close(), top.close()


def test_string_labels_need_class_names_and_name_an_unknown_one(demo):
    import numpy as np

    from cnnviz_widgets.inspect.dataset import known_labels

    model, dataset, _ = demo
    words = Relabelled(dataset, LABELS["string"])
    for build in (EmbeddingExplorer, TopPatches, CNNExplorer):
        with pytest.raises(
            ValueError,
            match=r"dataset\[0\] has the label 'seven', a string; pass "
            r"classes= \(the class names, in the model's output order\)",
        ):
            build(model, words, method="pca") if build is not TopPatches else build(model, words)
    with pytest.raises(
        ValueError,
        match=r"dataset\[\d+\] has the label '\w+', which is not a "
        r"class name \('zero', 'one', 'two'\)",
    ):
        EmbeddingExplorer(model, words, WORDS[:3], method="pca", background=False)
    x = CNNExplorer(model, words, WORDS, method="pca", background=False, progress=False)
    assert x.selected_info["label_name"] == "seven"
    x.close()
    words.targets = [WORDS[dataset[i][1]] for i in range(len(words))]  # known before the pass
    np.testing.assert_array_equal(
        known_labels(words, WORDS), [dataset[i][1] for i in range(len(words))]
    )
    # floats that are not whole numbers are no class indices: unlabelled (-1)
    halves = Relabelled(dataset, lambda y: y + 0.5)
    emb = EmbeddingExplorer(model, halves, method="pca", background=False)
    assert (emb.features.labels == -1).all()
    emb.close()


def test_classes_as_a_dict_are_names_by_index_and_a_string_is_refused(demo):
    from cnnviz_widgets.inspect.dataset import class_names

    model, dataset, _ = demo
    assert class_names({0: "zero", 2: "two", "3": "three"}) == ["zero", "class 1", "two", "three"]
    by_index = {i: w for i, w in enumerate(WORDS)}
    occ = OcclusionMap(model, dataset[0][0], classes=by_index)
    assert occ.class_names == WORDS
    occ.close()
    emb = EmbeddingExplorer(
        model, Relabelled(dataset, int), by_index, method="pca", background=False
    )
    assert emb.class_names == WORDS
    emb.close()
    for build in (
        lambda: OcclusionMap(model, dataset[0][0], classes="0123456789"),
        lambda: EmbeddingExplorer(model, dataset, "0123456789", method="pca"),
        lambda: TopPatches(model, dataset, classes="0123456789"),
        lambda: CNNExplorer(model, dataset, "0123456789", method="pca"),
    ):
        with pytest.raises(
            TypeError,
            match=r"classes must be a list of class names or a dict "
            r"\{index: name\}; got the string '0123456789', which would be read",
        ):
            build()
    with pytest.raises(TypeError, match=r"got the key 'cat' \(for a \{name: index\} dict"):
        class_names({"cat": 0})
