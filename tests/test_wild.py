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
from cnnviz_widgets.widgets._panels import detached

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
    for each in (cls, detached(cls)):  # a panel of CNNExplorer too
        with pytest.raises(TypeError) as err:
            each(model, *args, **{wrong: 3})
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
