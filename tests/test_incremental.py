"""The incremental engine's split modules: its op actions come from the shared geometry table."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from cnnviz_widgets.inspect import occlusion as occlusion_module
from cnnviz_widgets.inspect.geometry import OpKind
from cnnviz_widgets.inspect.incremental import ops
from cnnviz_widgets.inspect.occlusion import occlusion_map


@pytest.fixture(autouse=True)
def _always_incremental(monkeypatch):
    monkeypatch.setattr(occlusion_module, "MIN_FLOP_BOUND", 0.0)


def _maps(model, image, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        inc = occlusion_map(model, image, patch_size=4, stride=3, output="logit", **kw)
    full = occlusion_map(model, image, patch_size=4, stride=3, output="logit", method="full", **kw)
    return inc, full, [str(w.message) for w in rec]


def test_actions_follow_the_geometry_kinds():
    assert ops.ACTIONS[OpKind.POINTWISE] == ops.POINTWISE
    assert ops.ACTIONS[OpKind.WINDOW] == ops.ACTIONS[OpKind.PAD] == ops.WINDOW
    # statistics over the whole map: a receptive field passes, a rectangle does not
    assert OpKind.POINTWISE_GEOMETRIC not in ops.ACTIONS
    for kind in (OpKind.RESHAPE, OpKind.ADAPTIVE_POOL, OpKind.LAST_DIM):
        assert ops.ACTIONS[kind] == ops.GLOBAL


class SharedTableOps(nn.Module):
    """Ops the engine's own tables lacked, exact per position by geometry's table."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(3)
        self.shuffle = nn.ChannelShuffle(2)
        self.fbn = torchvision.ops.FrozenBatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.softmax = nn.Softmax2d()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        a = self.fbn(self.shuffle(self.lrn(self.c1(x))))
        b = self.c2(a) ** 2
        c = torch.concat([torch.rsub(torch.maximum(a, b), 1), torch.lerp(a, b, 0.3)], dim=1)
        return self.fc(self.softmax(c).mean((2, 3)))


def test_ops_of_the_shared_table_run_on_rectangles():
    torch.manual_seed(0)
    inc, full, warned = _maps(SharedTableOps().eval(), torch.randn(3, 20, 20))
    assert not warned
    assert {"lrn", "shuffle", "rsub", "lerp", "concat", "softmax"} <= set(inc.extra["rect_nodes"])
    np.testing.assert_allclose(inc.scores, full.scores, atol=1e-5)


class ConcatWithInput(nn.Module):
    """torch.concat (not cat) of a map computed in full and a fixed batch-1 input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)  # not exact on rectangles: full from here on
        self.fc = nn.Linear(12, 4)

    def forward(self, x, cond):
        c = torch.concat([self.norm(self.conv(x)), cond], dim=1)
        return self.fc(c.mean((2, 3)))


def test_concat_in_full_expands_fixed_inputs_to_the_batch():
    # was: torch.concat was not expanded like torch.cat, the batch of B maps failed against the
    # (1, C, H, W) input and the whole map fell back to method="full"
    torch.manual_seed(0)
    cond = torch.randn(1, 4, 16, 16)
    inc, full, warned = _maps(
        ConcatWithInput().eval(), torch.randn(3, 16, 16), forward_args=(cond,)
    )
    assert inc.method == "incremental" and inc.extra["rect_nodes"] == ["conv"]
    assert len(warned) == 1 and "GroupNorm (norm)" in warned[0]
    np.testing.assert_allclose(inc.scores, full.scores, atol=1e-5)


class ChannelReductions(nn.Module):
    """CBAM-like gate: reductions over channels keep the grid; over the map they are global."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Conv2d(2, 1, 5, padding=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        avg = x.mean(1, keepdim=True)
        top = torch.amax(x, dim=-3, keepdim=True)
        if self.with_max:
            top = top + torch.max(x, dim=1, keepdim=True)[0]  # (values, indices): not a map
        x = x * torch.sigmoid(self.gate(torch.cat([avg, top], dim=1)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("with_max", [False, True])
def test_reductions_over_channels_keep_the_rectangle(with_max):
    torch.manual_seed(0)
    model = ChannelReductions().eval()
    model.with_max = with_max
    inc, full, warned = _maps(model, torch.randn(3, 20, 20))
    rect = set(inc.extra["rect_nodes"])
    assert {"mean", "amax"} <= rect and "mean_1" in inc.extra["full_nodes"]
    if with_max:  # as before the split: the op is named, the rest computed in full
        assert len(warned) == 1 and "does not know the op max (max_1)" in warned[0], warned
    else:
        assert not warned and {"cat", "gate", "mul"} <= rect
    np.testing.assert_allclose(inc.scores, full.scores, atol=1e-5)


class FunctionalBnAct(nn.Module):
    """timm's spelling: a conv through F.conv2d on its own weight (Conv2dSame), a BatchNorm
    through F.batch_norm on running statistics (BatchNormAct2d), an Identity, then ReLU6."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.3)
        self.bn = nn.BatchNorm2d(cout)
        self.drop = nn.Identity()
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x):
        x = torch.nn.functional.conv2d(x, self.weight, None, 1, 1)
        bn = self.bn
        x = torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var, weight=bn.weight,
                                           bias=bn.bias, training=False, eps=bn.eps)  # fmt: skip
        return self.act(self.drop(x))


def test_functional_conv_and_batch_norm_fold_exactly():
    """The folded pair and the in-place activation behind an Identity: the same map as the
    full recompute, and the user's model untouched."""
    from cnnviz_widgets.inspect.incremental.engine import IncrementalEngine

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), FunctionalBnAct(8, 8),
        FunctionalBnAct(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 16, 16)
    folds = IncrementalEngine(model, x)._executor.folds
    assert len(folds.bn) == 3 and len(folds.inplace) == 3
    inc = occlusion_map(model, x, patch_size=5, stride=1, target=1)
    full = occlusion_map(model, x, patch_size=5, stride=1, target=1, method="full")
    assert inc.method == "incremental"
    assert np.abs(inc.scores - full.scores).max() <= 1e-5
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
