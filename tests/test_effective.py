"""Effective fields: input gradients and boxes against a float64 gradient computed by hand.

The expectation never goes through the code under test's forward: a float64 copy of the model
in eval mode, the layer's value written out as plain PyTorch calls, one image at a time.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from cnnviz_widgets import render
from cnnviz_widgets.inspect.dataset import top_activations
from cnnviz_widgets.inspect.effective import (
    SHARE,
    effective_box,
    effective_boxes,
    input_gradients,
    peel_box,
)
from cnnviz_widgets.inspect.receptive import receptive_fields
from cnnviz_widgets.widgets.patches import TopPatches


class Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.bn(self.conv(x)))


class BNAct(nn.Module):
    """timm's BatchNormAct2d in miniature: the (in-place) ReLU6 inside the layer."""

    def __init__(self, ch: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x):
        return self.act(self.bn(x))


def small_net() -> nn.Sequential:
    """conv-BN-ReLU, max-pool, a residual block, a strided conv, BN+ReLU6; in train mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            bn1=nn.BatchNorm2d(8),
            relu1=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(2),
            res=Residual(8),
            conv2=nn.Conv2d(8, 8, 3, stride=2, padding=1),
            bnact=BNAct(8),
        )
    )
    for bn in (net.bn1, net.res.bn, net.bnact.bn):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    net.bnact.bn.weight.data.mul_(6.0)  # some units saturate at the ReLU6's ceiling
    return net.train()


# The value each layer's gradient is taken of, by hand: a layer ending in ReLU/ReLU6 is
# differentiated at that activation's input (see inspect/effective.py).
def _pooled(n, x):
    return n.pool(torch.relu(n.bn1(n.conv1(x))))


VALUE = {
    "relu1": lambda n, x: n.bn1(n.conv1(x)),
    "pool": _pooled,
    "res": lambda n, x: _pooled(n, x) + n.res.bn(n.res.conv(_pooled(n, x))),
    "bnact": lambda n, x: n.bnact.bn(n.conv2(n.res(_pooled(n, x)))),
}


def reference_gradient(net, layer, image, unit) -> np.ndarray:
    """|d value / d input| summed over channels, float64, by plain PyTorch on one image."""
    net64 = copy.deepcopy(net).double().eval()
    x = image.double()[None].requires_grad_()
    c, y, xx = unit
    (g,) = torch.autograd.grad(VALUE[layer](net64, x)[0, c, y, xx], x)
    return g.abs().sum(dim=1)[0].numpy()


def _state(net):
    return (
        net.training,
        [m.training for m in net.modules()],
        {k: v.clone() for k, v in net.state_dict().items()},
        [p.grad for p in net.parameters()],
        [dict(m._forward_hooks) for m in net.modules()],
        [dict(m._forward_pre_hooks) for m in net.modules()],
    )


def _same_state(a, b) -> bool:
    return (
        a[0] == b[0]
        and a[1] == b[1]
        and all(torch.equal(a[2][k], b[2][k]) for k in a[2])
        and all(g is None for g in b[3])
        and a[4] == b[4]
        and a[5] == b[5]
    )


@pytest.mark.parametrize("layer", ["relu1", "pool", "res", "bnact"])
def test_gradient_and_box_match_a_float64_gradient_by_hand(layer):
    net = small_net()
    before = _state(net)
    images = torch.randn(10, 3, 24, 24)
    field = receptive_fields(net, (24, 24), [layer])[layer]
    ch, h, w = field.output_shape
    gen = torch.Generator().manual_seed(1)
    units = [
        (int(torch.randint(ch, (1,), generator=gen)), int(torch.randint(h, (1,), generator=gen)),
         int(torch.randint(w, (1,), generator=gen)))
        for _ in images
    ]  # fmt: skip
    got = input_gradients(net, layer, images, units, chunk=4)  # 3 chunks, the last partial
    boxes = effective_boxes(net, layer, images, units, chunk=4)
    assert _same_state(before, _state(net)), "the model was changed"
    for i, unit in enumerate(units):
        want = reference_gradient(net, layer, images[i], unit)
        np.testing.assert_allclose(got[i].numpy(), want, rtol=1e-4, atol=1e-6)
        fy0, fy1, fx0, fx1 = field.clipped_box(unit[1], unit[2])
        outside = want.copy()
        outside[fy0:fy1, fx0:fx1] = 0
        assert not outside.any(), "gradient outside the geometric field"
        expect = effective_box(want, (fy0, fy1, fx0, fx1), SHARE)
        assert boxes[i].box == expect.box and boxes[i].fallback == expect.fallback
        _check_guarantees(want, boxes[i].box, (fy0, fy1, fx0, fx1), SHARE)


def _check_guarantees(mass, box, field, share) -> None:
    """The box lies in the field, holds >= share of its mass, and no edge can be peeled."""
    y0, y1, x0, x1 = box
    fy0, fy1, fx0, fx1 = field
    assert fy0 <= y0 < y1 <= fy1 and fx0 <= x0 < x1 <= fx1
    total = mass[fy0:fy1, fx0:fx1].sum()
    assert mass[y0:y1, x0:x1].sum() >= share * total * (1 - 1e-9)
    peeled = []
    if y1 - y0 > 1:
        peeled += [(y0 + 1, y1, x0, x1), (y0, y1 - 1, x0, x1)]
    if x1 - x0 > 1:
        peeled += [(y0, y1, x0 + 1, x1), (y0, y1, x0, x1 - 1)]
    for a, b, c, d in peeled:
        assert mass[a:b, c:d].sum() < share * total * (1 + 1e-9)


def test_saturated_relu6_unit_is_measured_and_a_dead_unit_keeps_its_field():
    net = small_net().eval()
    images = torch.randn(4, 3, 24, 24)
    with torch.no_grad():
        out = net(images)  # bnact's output
    b, c, y, x = (out == 6).nonzero()[0].tolist()  # held at the ceiling: output gradient 0
    (found,) = effective_boxes(net, "bnact", images[b : b + 1], [(c, y, x)])
    assert not found.fallback and found.box != found.field
    dead = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.ReLU())
    with torch.no_grad():
        dead[0].bias.fill_(-100.0)  # every path through the first ReLU is off
    (box,) = effective_boxes(dead, "3", torch.rand(1, 1, 9, 9), [(1, 2, 2)])
    assert box.fallback and box.box == box.field == (2, 7, 2, 7)


def test_peel_box_is_the_documented_greedy_procedure():
    assert peel_box(np.ones((4, 4)), (0, 4, 0, 4), 0.5) == ((1, 4, 1, 4), 9 / 16)
    hot = np.zeros((7, 7))
    hot[2, 5] = 3.0
    hot[6, 0] = 0.1
    assert peel_box(hot, (0, 7, 0, 7), 0.9) == ((2, 3, 5, 6), 3.0 / 3.1)
    assert peel_box(hot, (1, 4, 3, 7), 0.9)[0] == (2, 3, 5, 6)
    with pytest.raises(ValueError, match=r"share must be a number in \(0, 1\].*got 1.5"):
        effective_box(hot, (0, 7, 0, 7), 1.5)


def test_effective_box_is_strictly_smaller_for_a_centre_weighted_deep_unit():
    """Three 5x5 convs whose taps fall off from the centre (as trained kernels' energy does):
    the geometric field of a layer-3 unit is 13x13, most of its gradient is in the middle."""
    g = torch.tensor([0.02, 0.1, 1.0, 0.1, 0.02])
    layers = []
    for _ in range(3):
        conv = nn.Conv2d(1, 1, 5, padding=2, bias=False)
        conv.weight.data[:] = torch.outer(g, g)
        layers += [conv, nn.ReLU()]
    net = nn.Sequential(*layers)
    image = torch.rand(1, 1, 32, 32) + 0.5
    (found,) = effective_boxes(net, "5", image, [(0, 16, 16)])
    assert found.field == (10, 23, 10, 23)
    h, w = found.size
    assert h < 13 and w < 13 and found.held >= SHARE


# ------------------------------------------------------------------------------ widget


def _tiles(view) -> np.ndarray:
    atlas = render.decode_png(view.atlas_png)
    cols = view.grid_shape[1]
    return np.stack(
        [render.unpack_tile(atlas, i, view.tile_shape, cols) for i in range(view.n_tiles)]
    )


def test_fit_into_keeps_the_aspect_and_pads_with_grey():
    tall = np.arange(8, dtype=np.uint8).reshape(4, 2) * 30
    (tile,) = render.fit_into([tall], (8, 8))
    np.testing.assert_array_equal(tile[:, 2:6], tall.repeat(2, 0).repeat(2, 1))
    assert (tile[:, :2] == 128).all() and (tile[:, 6:] == 128).all()
    (small,) = render.fit_into([np.zeros((8, 4, 3), np.uint8)], (4, 4))
    assert (small[:, 1:3] == 0).all() and (small[:, [0, 3]] == 128).all()


def test_top_patches_show_effective_crops_or_framed_fields_and_leave_the_model(demo, tmp_path):
    model, dataset, classes = demo
    before = _state(model)
    view = TopPatches(model, dataset, "relu3", k=3, classes=classes, progress=False).wait()
    assert view.crop == "effective" and "effective field (90% of gradient)" in view.caption
    top = top_activations(model, dataset, ["relu3"], 3, progress=False)["relu3"]  # own cache
    entries = [(int(c), r) for c in view.channels for r in range(3)]
    crops = [top.patch(c, r, crop="effective", model=model) for c, r in entries]
    np.testing.assert_array_equal(_tiles(view), render.fit_into(crops, (18, 18)))
    view.save_png(tmp_path / "effective.png")

    view.crop = "field"
    view.wait()
    assert "framed: effective field (90% of gradient)" in view.caption
    today = render.fit_tiles([top.patch(c, r) for c, r in entries], view.max_patch_px)
    tiles = _tiles(view)
    frame = (tiles == render.FRAME_COLOR).all(axis=-1)
    np.testing.assert_array_equal(tiles[~frame], np.repeat(today[..., None], 3, -1)[~frame])
    for tile_frame, (c, r), found in zip(
        frame, entries, top.effective_boxes(model, entries), strict=True
    ):
        fy, _, fx, _ = top.box(c, r)  # the field fits the tile unscaled (18 px)
        y0, y1, x0, x1 = np.subtract(found.box, (fy, fy, fx, fx))
        border = np.zeros_like(tile_frame)
        border[y0:y1, x0:x1] = True
        border[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = False
        np.testing.assert_array_equal(tile_frame, border)
    view.save_png(tmp_path / "field.png")
    inline = TopPatches(model, dataset, "relu3", 3, crop="field", background=False)
    assert inline.atlas_png == view.atlas_png
    assert _same_state(before, _state(model)), "the model was changed"
    with pytest.raises(ValueError, match="crop must be 'effective' or 'field'; got 'box'"):
        TopPatches(model, dataset, "relu3", 3, crop="box")


class InPlaceAfterUse(nn.Module):
    """`a.mul_` after conv2 saved `a` for its backward: no input gradient past conv2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        a = self.conv1(x)
        b = self.conv2(a)
        a.mul_(2.0)
        return self.conv3(a + b)


def test_a_model_with_no_input_gradient_keeps_its_geometric_crops():
    from cnnviz_widgets.inspect.effective import NotDifferentiable

    net = InPlaceAfterUse()
    data = [(torch.rand(3, 12, 12), i % 2) for i in range(6)]
    with pytest.raises(NotDifferentiable, match=r"cannot be differentiated up to layer 'conv3'"):
        effective_boxes(net, "conv3", torch.rand(1, 3, 12, 12), [(0, 5, 5)])
    (before,) = effective_boxes(net, "conv1", torch.rand(1, 3, 12, 12), [(0, 5, 5)])
    assert before.field == (4, 7, 4, 7) and not before.fallback  # the forward ends at conv1
    for background in (True, False):
        view = TopPatches(net, data, "conv3", 2, progress=False, background=background).wait()
        assert "no effective field (no input gradient)" in view.caption
        assert "modified by an inplace operation" in view.status
        today = render.fit_tiles([view.top.patch(c, r) for c in range(4) for r in range(2)], 64)
        np.testing.assert_array_equal(_tiles(view), today)
        view.close()


class TwiceReLU(nn.Module):
    """One ReLU module called twice, as torchvision's BasicBlock calls `relu`."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))))


def test_a_layer_called_twice_is_differentiated_at_its_last_call_as_ranked():
    torch.manual_seed(0)
    model = TwiceReLU().eval()
    image = torch.randn(1, 1, 12, 12)
    out = model(image)
    units = [(c, y, x) for c in range(2) for y in range(4, 8) for x in range(4, 8)]
    units = [u for u in units if out[(0, *u)] > 0][:4]  # active: a gradient to compare
    assert units, "no active unit to probe"
    got = input_gradients(model, "relu", image.expand(len(units), -1, -1, -1), units)
    for (c, y, x), g in zip(units, got, strict=True):
        leaf = image.clone().requires_grad_(True)
        (want,) = torch.autograd.grad(model(leaf)[0, c, y, x], leaf)  # the last call: the output
        torch.testing.assert_close(g, want.abs().sum(dim=1)[0])
        assert (g[:, : x - 2] == 0).all() and (g[:, x + 3 :] == 0).all()  # 5 wide: 2 convs
        assert g[y - 2 : y + 3, x - 2 : x + 3].sum() > 0
