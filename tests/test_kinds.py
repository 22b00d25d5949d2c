"""Layer kinds (post-activation, linear, gated) and how FeatureMaps draws each."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnviz_widgets import FeatureMaps, render
from cnnviz_widgets.inspect import capture, layer_catalogue


class FunctionalBlock(nn.Module):
    """A residual block whose ReLU is a function call, invisible to module hooks."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + x)


class Gate(nn.Module):
    """Squeeze-excite: the map times a sigmoid of its pooled channels."""

    def __init__(self, c):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.fc(F.adaptive_avg_pool2d(x, 1)))


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0 linear
        nn.BatchNorm2d(8),  # 1 linear
        nn.ReLU(),  # 2 post-activation
        FunctionalBlock(8),  # 3 post-activation (measured)
        nn.Conv2d(8, 8, 1),  # 4 linear
        Gate(8),  # 5 gated
        nn.Sequential(nn.Conv2d(8, 8, 1), nn.SiLU(), nn.Dropout()),  # 6 post-activation
    ).eval()


def test_each_kind_is_named_and_agrees_with_the_signs_of_the_maps():
    model = net()
    image = torch.randn(3, 16, 16)
    kinds = {i.name: i.kind for i in layer_catalogue(model, image)}
    assert kinds == {
        "0": "linear",
        "1": "linear",
        "2": "post-activation",
        "3": "post-activation",
        "3.conv": "linear",
        "3.bn": "linear",
        "4": "linear",
        "5": "gated",
        "5.fc": "linear",
        "5.gate": "post-activation",
        "6": "post-activation",
        "6.0": "linear",
        "6.1": "post-activation",
        "6.2": "post-activation",  # dropout hands the SiLU's map on
    }
    # independently: on other images, ReLU outputs never go negative, linear ones do
    out = capture(model, torch.randn(4, 3, 16, 16), ["1", "2", "3", "4"])
    assert (out["2"] >= 0).all() and (out["3"] >= 0).all()
    assert (out["1"] < 0).any() and (out["4"] < 0).any()


def test_torchvision_blocks_are_read_by_their_last_step():
    mobilenet = torchvision.models.mobilenet_v2(weights=None).eval()
    kinds = {i.name: i.kind for i in layer_catalogue(mobilenet, torch.rand(3, 64, 64))}
    assert kinds["features.2"] == "linear"  # an inverted residual ends in a projection
    assert kinds["features.2.conv.0"] == "post-activation"  # Conv2dNormActivation ends in ReLU6
    resnet = torchvision.models.resnet18(weights=None).eval()
    kinds = {i.name: i.kind for i in layer_catalogue(resnet, torch.rand(3, 64, 64))}
    assert kinds["layer3"] == kinds["layer3.1"] == "post-activation"
    assert kinds["layer3.1.bn2"] == "linear"
    effnet = torchvision.models.efficientnet_b0(weights=None).eval()
    kinds = {i.name: i.kind for i in layer_catalogue(effnet, torch.rand(3, 64, 64))}
    assert kinds["features.2.0.block.2"] == "gated"  # SqueezeExcitation


@pytest.mark.parametrize("layer, zero_rgb", [("2", (0, 0, 0)), ("4", (221, 221, 221))])
def test_post_activation_maps_start_at_black_and_linear_maps_centre_on_zero(layer, zero_rgb):
    model = net()
    image = torch.randn(3, 16, 16)
    maps = FeatureMaps(model, image, layer)
    act = capture(model, image, layer)[layer][0].numpy()
    kind = "post-activation" if layer == "2" else "linear"
    assert maps.kind == kind and kind in maps.caption
    tiles = np.stack([maps.tile(c) for c in range(act.shape[0])])
    if kind == "linear":  # coolwarm, 0 in the middle, -m and +m at the ends
        lut = render.colormap_lut("coolwarm")
        m = np.abs(act).max()
        want = lut[np.round((0.5 + act / (2 * m)) * 255).astype(int)]
        assert tiles.shape == (*act.shape, 3)
        assert np.abs(tiles.astype(int) - want.astype(int)).max() <= 1
        assert tuple(lut[128]) == pytest.approx(zero_rgb, abs=2)
    else:  # gray from 0 (black) to the layer's maximum (white)
        want = np.round(act / act.max() * 255)
        assert np.abs(tiles.astype(int) - want).max() <= 1
        assert tiles[act == 0].max() == 0
    maps.scale, maps.colormap = "minmax", "gray"  # the old drawing, on request
    np.testing.assert_array_equal(maps.tile(0), render.feature_tiles(act, scale="minmax")[0])
    maps.close()


def test_feature_maps_default_to_the_deepest_post_activation_map_that_fits():
    model = net()
    maps = FeatureMaps(model, torch.randn(3, 16, 16))
    assert maps.layer == "6"  # its field (7 px) fits the 16 px image; SiLU ends it
    maps.close()
