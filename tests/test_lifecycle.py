"""Nothing outlives its widget: after close() + del, no thread of ours is left and the widget
and the model it was given are garbage; an error in a background job ends in a status that says
what failed, with `running` False."""

from __future__ import annotations

import copy
import gc
import threading
import time
import weakref

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from cnnviz_widgets import (
    CNNExplorer,
    EmbeddingExplorer,
    FeatureMaps,
    FilterGrid,
    OcclusionMap,
    TopPatches,
)
from cnnviz_widgets.widgets import _owner
from cnnviz_widgets.widgets.patches import layer_choices


def ours(before=()) -> list[str]:
    """Our threads, but those in `before` (other tests' widgets may still idle)."""
    return [
        t.name for t in threading.enumerate() if t.name.startswith("cnnviz") and t not in before
    ]


WIDGETS = {
    "FilterGrid": lambda m, ds, cl: FilterGrid(m),
    "FeatureMaps": lambda m, ds, cl: FeatureMaps(m, ds[0][0], "conv2"),
    "OcclusionMap": lambda m, ds, cl: OcclusionMap(m, ds[0][0], patch_size=8, strides=[8, 4]),
    "TopPatches": lambda m, ds, cl: TopPatches(m, ds, "conv2", 3, progress=False),
    "EmbeddingExplorer": lambda m, ds, cl: EmbeddingExplorer(
        m, ds, cl, method="pca", progress=False
    ),
    "CNNExplorer": lambda m, ds, cl: CNNExplorer(m, ds, cl, method="pca", progress=False),
}


@pytest.mark.parametrize("kind", list(WIDGETS))
def test_a_closed_widget_and_its_model_are_garbage(demo, kind):
    before = set(threading.enumerate())
    model = copy.deepcopy(demo[0])
    dataset = Subset(demo[1], range(40))
    widget = WIDGETS[kind](model, dataset, demo[2])
    if hasattr(widget, "wait"):
        widget.wait(60)
    refs = weakref.ref(widget), weakref.ref(model)
    widget.close()
    del widget, model
    gc.collect()
    assert [r() is None for r in refs] == [True, True], "the widget or its model is still alive"
    assert ours(before) == []


def test_a_forgotten_widget_keeps_no_thread_once_idle(demo, monkeypatch):
    # a notebook re-runs a cell twenty times and never closes the old widgets
    monkeypatch.setattr(_owner, "IDLE_EXIT_S", 0.2)
    views = [OcclusionMap(demo[0], demo[1][i][0], patch_size=8, strides=[8]) for i in range(5)]
    threads = {v._lane.owner.thread for v in views} - {None}
    assert len(threads) == 1, "five widgets on one model: one thread runs it"
    for v in views:
        v.wait(60)
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threads and not any(t.is_alive() for t in threads)
    # an idle widget still works: its next job starts a thread again
    views[0].target = (views[0].target + 1) % 10
    got = views[0].wait(60)
    assert got.target == views[0].target
    for v in views:
        v.close()


class _FailsOnBatches(nn.Module):
    """Fine on one image, raises on the occluded batches (shape-dependent: fx cannot trace it,
    so the full recompute runs it)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[0] > 1:
            raise RuntimeError("boom on a batch")
        return self.fc(self.conv(x).mean((2, 3)))


def test_an_error_in_the_background_job_ends_the_run_and_says_what_failed():
    view = OcclusionMap(_FailsOnBatches(), torch.rand(1, 16, 16), patch_size=4, strides=[4])
    try:
        with pytest.raises(RuntimeError, match="boom on a batch"):
            view.wait(60)
        assert view.running is False
        assert view.status.startswith("error: RuntimeError") and "boom on a batch" in view.status
    finally:
        view.close()


def test_an_error_before_the_first_map_ends_the_run_too(demo, monkeypatch):
    from cnnviz_widgets.widgets import occlusion as widget_module

    def broken(*args, **kwargs):
        raise ValueError("no map for you")

    view = OcclusionMap(demo[0], demo[1][0][0], patch_size=8, strides=[8])
    view.wait(60)
    monkeypatch.setattr(widget_module, "occlusion_maps", broken)
    view.target = (view.target + 1) % 10
    with pytest.raises(ValueError, match="no map for you"):
        view.wait(60)
    assert view.running is False and view.status == "error: ValueError: no map for you"
    view.close()


def test_what_depends_on_the_structure_is_derived_once_per_model(demo, monkeypatch):
    # the explorer and its panels share the layer catalogue and the receptive fields (they
    # used to trace the model for them three times); a replaced module is a new structure
    import cnnviz_widgets.inspect as inspect_pkg
    import cnnviz_widgets.inspect.receptive as receptive
    import cnnviz_widgets.widgets.occlusion as occlusion_widget

    model, dataset, classes = copy.deepcopy(demo[0]), Subset(demo[1], range(40)), demo[2]
    expected = [c["name"] for c in layer_choices(copy.deepcopy(model), dataset[0][0])]
    calls = {"catalogue": 0, "fields": 0, "graph": 0}
    real_catalogue, real_fields = inspect_pkg.layer_catalogue, receptive.receptive_fields
    real_trace = occlusion_widget.trace

    def catalogue(*args, **kwargs):
        calls["catalogue"] += 1
        return real_catalogue(*args, **kwargs)

    def fields(model, size, layers=None, **kwargs):
        if layers is None:  # every layer: the picker's
            calls["fields"] += 1
        return real_fields(model, size, layers, **kwargs)

    def trace(*args, **kwargs):  # the occlusion maps' graph
        calls["graph"] += 1
        return real_trace(*args, **kwargs)

    monkeypatch.setattr(occlusion_widget, "trace", trace)
    monkeypatch.setattr(inspect_pkg, "layer_catalogue", catalogue)
    monkeypatch.setattr(receptive, "receptive_fields", fields)
    explorer = CNNExplorer(model, dataset, classes, method="pca", progress=False)
    explorer.wait(60)
    assert calls == {"catalogue": 1, "fields": 1, "graph": 1}
    assert [c["name"] for c in explorer.top_patches.layer_options] == expected
    FeatureMaps(model, dataset[0][0], "conv2").close()  # the same structure: nothing new
    explorer.selected_index = 5  # a new image of the same shape: the same graph
    explorer.wait(60)
    other = OcclusionMap(model, dataset[7][0], patch_size=8, strides=[8])
    other.wait(60)
    other.close()
    assert calls == {"catalogue": 1, "fields": 1, "graph": 1}
    model.conv2 = nn.Conv2d(16, 32, 3, padding=1)  # a replaced module: derived again
    FeatureMaps(model, dataset[0][0], "conv2").close()
    assert calls["catalogue"] == 2
    explorer.close()
