"""Wrapped models (torch.compile, DataParallel, DDP) are unwrapped, never run through the wrapper.

A model in train mode with BatchNorm, wrapped: every entry point gives what it gives on the
module itself (an independent copy), the user's model is left exactly as it was (flags,
every tensor bit for bit, running statistics included, no hooks), and a warning says so.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cnnviz_widgets import CNNExplorer, FeatureMaps, OcclusionMap, TopPatches
from cnnviz_widgets.inspect import (
    capture,
    class_probabilities,
    extract_features,
    first_conv,
    layer_catalogue,
    layer_names,
    receptive_field,
    resolve_layer,
    top_activations,
    weights_fingerprint,
)
from cnnviz_widgets.inspect.occlusion import occlusion_map
from cnnviz_widgets.inspect.wrappers import unwrap
from cnnviz_widgets.widgets._owner import owner_of

CLASSES = ["a", "b", "c"]


class Net(nn.Module):
    """Two conv blocks with BatchNorm (running statistics a train-mode forward would change)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        return self.fc(self.flatten(self.gap(self.relu2(self.bn2(self.conv2(x))))))


class Images(torch.utils.data.Dataset):
    def __init__(self, n: int = 24):
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(n, 1, 16, 16, generator=g)
        self.y = torch.arange(n) % 3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def _net() -> Net:
    torch.manual_seed(3)
    net = Net()
    for bn in (net.bn1, net.bn2):  # statistics unlike any batch's
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net.train()


def _state(model: nn.Module) -> tuple:
    return (
        [m.training for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _unchanged(model: nn.Module, before: tuple) -> None:
    assert [m.training for m in model.modules()] == before[0]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[1][key]), key
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


@pytest.fixture(scope="module")
def ddp_group(tmp_path_factory):
    dist = torch.distributed
    if not dist.is_available():
        yield None
        return
    path = tmp_path_factory.mktemp("pg") / "store"
    try:
        dist.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)
    except Exception:  # no gloo here
        yield None
        return
    yield True
    dist.destroy_process_group()


def _wrap(kind: str, model: nn.Module, ddp_group) -> nn.Module:
    if kind == "compile":
        return torch.compile(model, backend="eager")
    if kind == "DataParallel":
        return nn.DataParallel(model)  # no GPU: device_ids is empty, the module runs as is
    if ddp_group is None:
        pytest.skip("no gloo process group on this machine")
    return nn.parallel.DistributedDataParallel(model)


def _calls(model, dataset, image, prefix: str) -> dict:
    """What each entry point gives; widgets closed after."""
    fm = FeatureMaps(model, image, f"{prefix}relu2")
    occ = OcclusionMap(model, image, patch_size=4, stride=2)
    tp = TopPatches(model, dataset, f"{prefix}relu2", 3, crop="field", background=False)
    x = CNNExplorer(model, dataset, CLASSES, method="pca", background=False, progress=False)
    x.wait()
    found = {
        "occlusion_map": occlusion_map(model, image, patch_size=4, stride=2).scores,
        "capture": capture(model, image, f"{prefix}relu2")["relu2"].numpy(),
        "extract_features": extract_features(model, dataset, progress=False).copy(),
        "FeatureMaps": (fm.layer, fm.activations),
        "OcclusionMap": occ.wait().scores,
        "TopPatches": (tp.layer, tp.top.values, tp.top.indices),
        "CNNExplorer": (
            x.layer,
            x.embedding.features.features.copy(),
            x.top_patches.top.values,
            x.occlusion.wait().scores,
        ),
    }
    for widget in (fm, occ, tp, x):
        widget.close()
    return found


def _equal(a, b, name: str) -> None:
    if isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            _equal(x, y, name)
    else:
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.fixture(scope="module")
def expected():
    """The same calls on the module itself: an independent copy, not wrapped."""
    dataset = Images()
    return _calls(_net(), dataset, dataset[5][0], "")


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("compile", "_orig_mod."), ("DataParallel", "module."), ("DDP", "module.")],
)
def test_a_wrapped_train_mode_model_is_shown_as_its_module_and_left_as_it_was(
    kind, prefix, expected, ddp_group
):
    model = _net()
    wrapped = _wrap(kind, model, ddp_group)
    before = _state(model)
    dataset = Images()
    with pytest.warns(UserWarning, match=r"is what is shown.*without the '(_orig_mod|module)\."):
        got = _calls(wrapped, dataset, dataset[5][0], prefix)
    assert got.keys() == expected.keys()
    for name, value in got.items():
        _equal(value, expected[name], name)
    assert got["FeatureMaps"][0] == got["TopPatches"][0] == "relu2"
    _unchanged(model, before)
    with pytest.warns(UserWarning):
        assert owner_of(wrapped) is owner_of(model)
        assert resolve_layer(wrapped, f"{prefix}bn2") == ("bn2", model.bn2)


def test_wrappers_are_peeled_one_by_one_and_anything_else_is_returned_as_it_is():
    model = _net()
    nested = nn.DataParallel(torch.compile(model, backend="eager"))
    with pytest.warns(UserWarning) as record:
        assert unwrap(nested) is model
    (message,) = [str(w.message) for w in record]
    assert "nn.DataParallel(torch.compile(Net))" in message
    assert "model.module._orig_mod" in message and "'module._orig_mod.'" in message
    assert record[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(UserWarning):
        assert capture(nested, torch.rand(1, 16, 16), "module._orig_mod.conv1").keys() == {"conv1"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert unwrap(model) is model
        assert unwrap("not a model") == "not a model"
        assert resolve_layer(model, "conv1") == ("conv1", model.conv1)


def test_every_inspect_entry_point_speaks_the_modules_names():
    model, image = _net(), Images()[0][0]
    wrapped = torch.compile(nn.DataParallel(model), backend="eager")
    before = _state(model)
    with pytest.warns(UserWarning, match=r"torch.compile\(nn.DataParallel\(Net\)\)"):
        assert layer_names(wrapped) == layer_names(model)
        assert [i.name for i in layer_catalogue(wrapped, image)][:2] == ["conv1", "bn1"]
        assert first_conv(wrapped) == "conv1"
        assert weights_fingerprint(wrapped) == weights_fingerprint(model)
        field = receptive_field(wrapped, "_orig_mod.module.relu2", (16, 16), channels=1)
        assert field == receptive_field(model, "relu2", (16, 16), channels=1)
        np.testing.assert_array_equal(
            class_probabilities(wrapped, image), class_probabilities(model, image)
        )
        top = top_activations(wrapped, Images(), "module.relu2", 2, progress=False, cache=False)
        assert list(top) == ["relu2"]
    _unchanged(model, before)


def test_a_model_compiled_in_place_is_viewed_not_run_in_train_mode(expected):
    model = _net()
    model.compile(backend="eager")  # no wrapper: the compiled call lives on the module
    before = _state(model)
    dataset = Images()
    image = dataset[5][0]
    np.testing.assert_array_equal(
        occlusion_map(model, image, patch_size=4, stride=2).scores, expected["occlusion_map"]
    )
    np.testing.assert_array_equal(
        capture(model, image, "relu2")["relu2"].numpy(), expected["capture"]
    )
    _unchanged(model, before)
