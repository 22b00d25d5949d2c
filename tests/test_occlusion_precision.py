"""Occlusion's float32 error where logits are large, and batch coupling told from kernel noise."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_widgets.inspect.occlusion import occlusion_map

COUPLING = "depends on the other images of its batch"


class PreActBlock(nn.Module):
    """A pre-activation residual block (BatchNorm before each conv: nothing to fold)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 else None

    def forward(self, x):
        o = F.relu(self.bn1(x))
        short = self.short(o) if self.short is not None else x
        return self.conv2(F.relu(self.bn2(self.conv1(o)))) + short


class Big(nn.Module):
    """Kaiming-initialised, with logits near 2,000 and two classes within ~1 of each other."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.body = nn.Sequential(PreActBlock(16, 16, 1), PreActBlock(16, 32, 2),
                                  PreActBlock(32, 32, 1), PreActBlock(32, 64, 2))  # fmt: skip
        self.fc = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)

    def features(self, x):
        return F.relu(self.body(self.stem(x))).mean((2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


def big_logits_model(x: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = Big().eval()
    with torch.no_grad():
        f = model.features(x)
        k = int(model.fc(f).argmax())
        w, b = model.fc.weight, model.fc.bias
        w[0], b[0] = w[k], b[k]
        w[1], b[1] = w[k] * (1 + 3e-4), b[k]  # a rival class ~1 logit away
        scale = 2000.0 / float(model.fc(f)[0, 0].abs())
        w.mul_(scale)
        b.mul_(scale)
    return model


def test_float32_error_at_large_logits_is_the_full_recomputes():
    """Against float64, the engine's map is as close as the model's own full recompute: at
    logits of 2,000 a float32 logit is only good to ~1e-4, so neither meets 1e-4 in
    probability against the truth, and the engine must not add a larger error of its own."""
    torch.manual_seed(1)
    x = torch.rand(1, 3, 32, 32)
    model = big_logits_model(x)
    logits = model(x)[0]
    assert logits[0].abs() > 1500 and (logits[0] - logits[1]).abs() < 5
    kw = dict(patch_size=8, stride=2, target=0)
    truth = occlusion_map(copy.deepcopy(model).double(), x.double(), method="full", **kw).scores
    full = occlusion_map(model, x, method="full", **kw)
    inc = occlusion_map(model, x, **kw)
    assert inc.method == "incremental"
    assert truth.min() > 0.05 and truth.max() < 0.95  # probabilities where rounding shows
    err_full = np.abs(full.scores.astype(np.float64) - truth).max()
    err_inc = np.abs(inc.scores.astype(np.float64) - truth).max()
    assert err_full > 1e-6  # the float32 noise this test is about is there
    assert err_inc <= 3 * err_full, (err_inc, err_full)


class BatchSizeNoise(nn.Module):
    """What a batched kernel does to a deep net: a batch of several rounds differently from
    batch 1 (here 2e-3 of the logits), whatever the other images are."""

    def forward(self, x):
        return x * (1 + 2e-3) if x.shape[0] > 1 else x


class BatchStats(nn.Module):
    """Normalised by the batch's own statistics: truly coupled."""

    def forward(self, x):
        return x - x.mean(0, keepdim=True)


def small(middle: nn.Module, last: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), middle, nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5), last or nn.Identity(),
    ).eval()  # fmt: skip


def one_at_a_time(model: nn.Module, x: torch.Tensor, patch: int, target: int) -> np.ndarray:
    """Each centred patch's probability, one occluded image per forward."""
    _, _, h, w = x.shape
    out = np.zeros((h, w), np.float64)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                y = x.clone()
                y[..., max(0, i - patch // 2) : i - patch // 2 + patch,
                  max(0, j - patch // 2) : j - patch // 2 + patch] = 0  # fmt: skip
                out[i, j] = float(torch.softmax(model(y), 1)[0, target])
    return out


def test_batch_size_noise_is_not_coupling():
    model = small(nn.Identity(), BatchSizeNoise())
    x = torch.rand(1, 3, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = occlusion_map(model, x, patch_size=4, stride=1, target=2)
    assert not [w for w in caught if COUPLING in str(w.message)]
    noise = [str(w.message) for w in caught if "between a batch of 1" in str(w.message)]
    assert len(noise) == 1 and "do not depend on the other images" in noise[0]  # said, once
    assert np.abs(got.scores - one_at_a_time(model, x, 4, 2)).max() <= 1e-3


def test_true_coupling_is_still_found_and_each_image_runs_alone():
    model = small(BatchStats())
    x = torch.rand(1, 3, 8, 8)
    with pytest.warns(UserWarning, match=COUPLING):
        got = occlusion_map(model, x, patch_size=4, stride=1, target=2)
    assert np.abs(got.scores - one_at_a_time(model, x, 4, 2)).max() <= 1e-5
