"""Occlusion maps: incremental == full (exact), Captum relation, errors, state restored."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from cnnviz_widgets.inspect import occlusion as occlusion_module
from cnnviz_widgets.inspect.incremental import UnsupportedOpWarning
from cnnviz_widgets.inspect.occlusion import (
    OcclusionResult,
    captum_equivalent,
    occlusion_map,
    occlusion_maps,
)

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _always_incremental(monkeypatch):
    """Exactness tests run the engine even where its cost model would pick the full path."""
    monkeypatch.setattr(occlusion_module, "MIN_FLOP_BOUND", 0.0)


class SmallCNN(nn.Module):
    """Same layer types as the digits demo: conv/relu/maxpool x3, adaptive pool, two linears."""

    def __init__(self, c_in: int = 1, n: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, 32)
        self.relu4 = nn.ReLU()
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(32, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        x = self.relu4(self.fc1(self.flatten(self.avgpool(x))))
        return self.fc(self.dropout(x))


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics (random init has mean 0 / var 1)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def assert_same_maps(model, image, expect_rect=True, **kw):
    """Incremental vs full: <= 1e-4 in probability, and logits close relative to the map."""
    out = {}
    for output in ("prob", "logit"):
        inc = occlusion_map(model, image, output=output, **kw)
        full = occlusion_map(model, image, output=output, method="full", **kw)
        assert inc.method == "incremental"
        assert full.method == "full"
        assert inc.scores.shape == full.scores.shape
        assert inc.scores.dtype == np.float32
        assert inc.target == full.target
        diff = float(np.abs(inc.scores - full.scores).max())
        if output == "prob":
            assert diff <= 1e-4, diff
        else:
            spread = float(full.scores.max() - full.scores.min())
            tol = 1e-5 + 1e-4 * float(np.abs(full.scores).max()) + 1e-3 * spread
            assert diff <= tol, (diff, tol, spread)
            assert inc.base_score == pytest.approx(full.base_score, rel=1e-4, abs=1e-5)
        if expect_rect:
            assert inc.extra["rect_nodes"], "nothing was computed incrementally"
        out[output] = (inc, full)
    return out


# -------------------------------------------------------------------- models


def test_demo_like_cnn():
    model = SmallCNN().eval()
    image = torch.randn(1, 32, 32)
    res = assert_same_maps(model, image, patch_size=4, stride=2)
    inc, _ = res["logit"]
    assert inc.scores.shape == (16, 16)  # centred on every 2nd pixel of 32
    assert inc.patch_size == (4, 4) and inc.stride == (2, 2)


def test_demo_model():
    try:
        from cnnviz_widgets.demo import load_demo

        model, dataset, _ = load_demo()
    except (ImportError, FileNotFoundError, OSError) as e:  # pragma: no cover
        pytest.skip(f"demo not available: {e}")
    image = dataset[0][0] if isinstance(dataset[0], (tuple, list)) else dataset[0]
    assert_same_maps(model, image, patch_size=4, stride=2)
    res = occlusion_map(model, image, patch_size=8, stride=4)
    assert res.scores.min() >= 0.0 and res.scores.max() <= 1.0


@pytest.mark.parametrize(
    ("name", "size", "patch", "stride"),
    [
        ("resnet18", (96, 96), 16, 16),
        ("alexnet", (96, 96), 16, 16),
        ("vgg16", (64, 64), 8, 8),
    ],
)
def test_torchvision(name, size, patch, stride):
    model = _randomize_bn(getattr(torchvision.models, name)(weights=None)).eval()
    image = torch.randn(3, *size)
    assert_same_maps(model, image, patch_size=patch, stride=stride)


def test_resnet18_rectangular_pairs_tensor_baseline():
    model = _randomize_bn(torchvision.models.resnet18(weights=None)).eval()
    image = torch.randn(1, 3, 64, 96)
    baseline = torch.tensor([0.5, -0.2, 0.1]).view(3, 1, 1)
    res = assert_same_maps(
        model, image, patch_size=(16, 12), stride=(12, 20), baseline=baseline, batch_size=5
    )
    inc, _ = res["prob"]
    assert inc.scores.shape == (-(-64 // 12), -(-96 // 20))  # centred: ceil(H / stride)
    assert inc.patch_size == (16, 12) and inc.stride == (12, 20)


def test_rectangular_demo_like_and_full_patch_baseline():
    model = SmallCNN(c_in=2).eval()
    image = torch.randn(2, 40, 56)
    baseline = torch.randn(2, 5, 9)
    assert_same_maps(model, image, patch_size=(5, 9), stride=(3, 4), baseline=baseline)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0])
def test_threshold_does_not_change_the_map(threshold):
    model = _randomize_bn(torchvision.models.resnet18(weights=None)).eval()
    image = torch.randn(3, 64, 64)
    inc = occlusion_map(model, image, patch_size=8, stride=8, full_threshold=threshold)
    full = occlusion_map(model, image, patch_size=8, stride=8, method="full")
    assert np.abs(inc.scores - full.scores).max() <= 1e-4


# -------------------------------------------------------------------- hypothesis conv stacks


class Residual(nn.Module):
    def __init__(self, c: int, stride: int, k: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, k, stride, padding=k // 2)
        self.bn = nn.BatchNorm2d(c)
        self.b = nn.Conv2d(c, c, 1, stride)

    def forward(self, x):
        return torch.relu(self.bn(self.a(x))) + self.b(x)


class Concat(nn.Module):
    def __init__(self, c: int, pool: bool) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.MaxPool2d(3, 1, 1) if pool else nn.Conv2d(c, c, 5, padding=2)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


def _out(n: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    num = n + 2 * p - d * (k - 1) - 1
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


@st.composite
def stacks(draw):
    h = draw(st.integers(12, 28))
    w = draw(st.integers(12, 28))
    c = draw(st.sampled_from([2, 4]))
    layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1)]
    ch, cw = h, w
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "pool", "residual", "concat", "act"]))
        if kind == "conv":
            k = draw(st.integers(1, 4))
            s = draw(st.integers(1, 2))
            d = draw(st.integers(1, 2))
            p = draw(st.integers(0, (d * (k - 1)) // 2 + 1))
            g = draw(st.sampled_from([1, 2]))
            oh, ow = _out(ch, k, s, p, d), _out(cw, k, s, p, d)
            if min(oh, ow) < 2:
                continue
            layers += [nn.Conv2d(c, 2 * c, k, s, p, d, groups=g), nn.BatchNorm2d(2 * c)]
            c, ch, cw = 2 * c, oh, ow
        elif kind == "pool":
            k = draw(st.integers(2, 3))
            s = draw(st.integers(1, 3))
            p = draw(st.integers(0, k // 2))
            ceil = draw(st.booleans())
            oh, ow = _out(ch, k, s, p, 1, ceil), _out(cw, k, s, p, 1, ceil)
            if min(oh, ow) < 2:
                continue
            if draw(st.booleans()):
                layers.append(nn.MaxPool2d(k, s, p, ceil_mode=ceil))
            else:
                cip = draw(st.booleans())
                layers.append(nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=cip))
            ch, cw = oh, ow
        elif kind == "residual":
            s = draw(st.integers(1, 2))
            k = draw(st.sampled_from([3, 5]))
            oh, ow = _out(ch, k, s, k // 2), _out(cw, k, s, k // 2)
            if min(oh, ow) < 2:
                continue
            layers.append(Residual(c, s, k))
            ch, cw = oh, ow
        elif kind == "concat":
            layers.append(Concat(c, draw(st.booleans())))
            c *= 2
        else:
            layers.append(draw(st.sampled_from([nn.ReLU(), nn.SiLU(), nn.GELU(), nn.Hardswish()])))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 5)]
    model = _randomize_bn(nn.Sequential(*layers)).eval()
    patch = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    threshold = draw(st.sampled_from([0.6, 1.0]))
    return model, (h, w), patch, stride, threshold


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stacks())
def test_random_conv_stacks(case):
    model, (h, w), patch, stride, threshold = case
    image = torch.randn(3, h, w)
    for output in ("prob", "logit"):
        inc = occlusion_map(
            model,
            image,
            patch_size=patch,
            stride=stride,
            output=output,
            full_threshold=threshold,
            target=0,
        )
        full = occlusion_map(
            model, image, patch_size=patch, stride=stride, output=output, method="full", target=0
        )
        diff = float(np.abs(inc.scores - full.scores).max())
        tol = 1e-4 if output == "prob" else 1e-5 + 1e-4 * float(np.abs(full.scores).max())
        assert diff <= tol, (diff, tol, model)


@pytest.mark.parametrize(
    "layer",
    [
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.MaxPool2d(2, 2, 0, ceil_mode=True),
        nn.MaxPool2d(3, 2, 1, dilation=2),
        nn.MaxPool2d((3, 2), (1, 2), (1, 0)),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=True),
        nn.AvgPool2d(2, 3, 1, ceil_mode=True),
        nn.AvgPool2d(3, 2, 1, divisor_override=5),
        nn.Conv2d(4, 4, 4, stride=3, padding=2, dilation=2),
        nn.Conv2d(4, 4, 4, padding="same"),
        nn.Conv2d(4, 4, (5, 3), padding="valid"),
        nn.Conv2d(4, 8, 3, padding=(2, 0), groups=4),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
    ],
    ids=repr,
)
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_window_layer_variants(layer):
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # no ReLU before: max pooling must see negatives
        layer,  # and no ReLU right after (it would hide a 0 instead of -inf pad)
        nn.LazyConv2d(6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.LazyLinear(5),
    )
    image = torch.randn(3, 23, 19)
    model(image.unsqueeze(0))  # materialize the lazy layers
    model.eval()
    assert_same_maps(model, image, patch_size=(4, 3), stride=(2, 3), full_threshold=1.0)


# -------------------------------------------------------------------- Captum


def _captum(model, image, target, patch, stride, baseline, output):
    captum_attr = pytest.importorskip("captum.attr")

    def forward(x):
        y = model(x)
        return torch.softmax(y, dim=1) if output == "prob" else y

    x = image.unsqueeze(0) if image.dim() == 3 else image
    c = x.shape[1]
    return (
        captum_attr.Occlusion(forward)
        .attribute(
            x,
            target=target,
            sliding_window_shapes=(c, *patch),
            strides=(c, *stride),
            baselines=baseline,
            perturbations_per_eval=7,
        )[0]
        .numpy()
    )


@pytest.mark.parametrize("output", ["prob", "logit"])
def test_full_matches_captum_non_overlapping(output):
    model = SmallCNN().eval()
    image = torch.randn(1, 32, 32)
    res = occlusion_map(
        model, image, patch_size=8, stride=8, output=output, method="full", placement="inside"
    )
    attr = _captum(model, image, res.target, (8, 8), (8, 8), 0.0, output)
    # stride == patch: every pixel of the patch at (i, j) gets base_score - scores[i, j]
    for i in range(4):
        for j in range(4):
            block = attr[:, i * 8 : (i + 1) * 8, j * 8 : (j + 1) * 8]
            np.testing.assert_allclose(block, res.base_score - res.scores[i, j], atol=2e-5)


@pytest.mark.parametrize(
    ("size", "patch", "stride"),
    [
        ((26, 34), (6, 4), (4, 3)),  # (26 - 6) % 4 == 0 and (34 - 4) % 3 == 0
        ((27, 35), (6, 4), (4, 3)),  # neither divides: Captum clips the last window
        ((23, 29), (7, 5), (5, 4)),
    ],
)
def test_inside_placement_matches_captum(size, patch, stride):
    model = SmallCNN(c_in=2).eval()
    image = torch.randn(2, *size)
    for method in ("full", "incremental"):
        res = occlusion_map(
            model, image, patch_size=patch, stride=stride, method=method, placement="inside"
        )
        attr = _captum(model, image, res.target, patch, stride, 0.0, "prob")
        np.testing.assert_allclose(captum_equivalent(res, channels=2), attr, atol=2e-5)


# -------------------------------------------------------------------- fallback, errors, state


class Flip(nn.Module):
    def forward(self, x):
        return torch.flip(x, dims=[3])


class WithUnknownOps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.flip = Flip()  # an unknown function inside a traced module
        self.norm = nn.GroupNorm(2, 8)  # an unknown module
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.norm(self.flip(x))
        x = self.conv2(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_unknown_op_warns_once_and_stays_exact():
    model = WithUnknownOps().eval()
    image = torch.randn(3, 24, 24)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        inc = occlusion_map(model, image, patch_size=5, stride=3, output="logit")
    ours = [w for w in rec if issubclass(w.category, UnsupportedOpWarning)]
    assert len(ours) == 1
    assert "flip" in str(ours[0].message)
    full = occlusion_map(model, image, patch_size=5, stride=3, output="logit", method="full")
    np.testing.assert_allclose(inc.scores, full.scores, atol=1e-5)
    assert inc.extra["rect_nodes"]  # conv1 / relu still incremental


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 2
        return self.fc(x.mean(dim=(2, 3)))


def test_untraceable_model_falls_back_to_full():
    model = Untraceable().eval()
    image = torch.randn(3, 16, 16)
    with pytest.warns(UserWarning, match="cannot compute this model exactly"):
        res = occlusion_map(model, image, patch_size=4, stride=4)
    full = occlusion_map(model, image, patch_size=4, stride=4, method="full")
    assert res.method == "full"
    np.testing.assert_allclose(res.scores, full.scores, atol=1e-6)


class Spatial(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch_size": 40}, r"patch_size \(40, 40\).*\(H, W\) = \(32, 32\)"),
        ({"patch_size": (8, 33)}, r"patch_size \(8, 33\)"),
        ({"patch_size": 0}, r"patch_size \(0, 0\)"),
        ({"stride": 0}, r"stride \(0, 0\) must be >= 1"),
        ({"stride": (2, -1)}, r"stride \(2, -1\)"),
        ({"target": 10}, r"target 10 out of range \[0, 10\)"),
        ({"target": -1}, r"target -1 out of range \[0, 10\)"),
        ({"output": "softmax"}, r"output must be one of \('prob', 'logit'\), got 'softmax'"),
        ({"method": "fast"}, r"method must be one of"),
        ({"baseline": torch.zeros(2, 2)}, r"baseline must be .*\(C, ph, pw\) = \(3, 16, 16\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    model = SmallCNN(c_in=3).eval()
    image = torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match=match):
        occlusion_map(model, image, **kwargs)


@pytest.mark.parametrize("shape", [(32, 32), (2, 3, 32, 32), (1, 1, 3, 32, 32)])
def test_bad_image_shape(shape):
    # the error names the shape it got and the ones it takes
    with pytest.raises(
        ValueError, match=r"\(C, H, W\) or \(.*got .*\(" + ", ".join(map(str, shape))
    ):
        occlusion_map(SmallCNN(c_in=3).eval(), torch.randn(*shape))


def test_model_without_class_scores():
    with pytest.raises(ValueError, match=r"\(1, num_classes\).*got \(1, 4, 14, 14\)"):
        occlusion_map(Spatial(), torch.randn(3, 16, 16), patch_size=4, stride=4)
    with pytest.raises(ValueError, match=r"\(1, num_classes\).*got \(1, 4, 14, 14\)"):
        occlusion_map(Spatial(), torch.randn(3, 16, 16), patch_size=4, stride=4, method="full")


def test_mode_restored_no_hooks_no_grad_changes():
    model = _randomize_bn(torchvision.models.resnet18(weights=None))
    model.train()
    model.layer1.eval()  # a mixed state must come back as it was
    modes = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.randn(3, 64, 64)
    occlusion_map(model, image, patch_size=16, stride=16)
    occlusion_map(model, image, patch_size=16, stride=16, method="full")
    assert {n: m.training for n, m in model.named_modules()} == modes
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    after = model.state_dict()
    for k, v in state.items():  # eval mode: BN running stats untouched
        assert torch.equal(v, after[k]), k
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_mode_restored_on_error():
    model = SmallCNN(c_in=3).train()
    with pytest.raises(ValueError):
        occlusion_map(model, torch.randn(3, 32, 32), target=99)
    assert all(m.training for m in model.modules())


def test_coarse_to_fine_generator():
    model = SmallCNN(c_in=3).train()
    image = torch.randn(3, 32, 32)
    gen = occlusion_maps(model, image, strides=(8, 4, 2), patch_size=8, output="logit")
    maps = []
    for res in gen:
        assert isinstance(res, OcclusionResult)
        assert model.training  # restored between maps
        maps.append(res)
    assert [m.stride for m in maps] == [(8, 8), (4, 4), (2, 2)]
    assert [m.scores.shape for m in maps] == [(4, 4), (8, 8), (16, 16)]  # centred
    assert "base_s" in maps[0].extra
    for res in maps:
        one = occlusion_map(model, image, patch_size=8, stride=res.stride, output="logit")
        np.testing.assert_allclose(res.scores, one.scores, atol=1e-5)
        assert res.target == maps[0].target and res.base_score == maps[0].base_score
    # stride 8 with patch 8 shares windows with the stride-4 map (every other one)
    np.testing.assert_allclose(maps[0].scores, maps[1].scores[::2, ::2], atol=1e-5)


def test_each_map_computes_only_the_positions_no_coarser_map_of_the_run_did():
    model = SmallCNN(c_in=3).eval()
    image = torch.randn(3, 32, 32)
    maps = list(occlusion_maps(model, image, strides=(16, 8, 4, 3), patch_size=8))
    # centred patches: the stride-8 centres hold the stride-16 ones, stride 4 both; of the
    # stride-3 centres only the multiples of 12 (0, 12, 24 on each axis) are known
    assert [m.extra["computed"] for m in maps] == [4, 16 - 4, 64 - 16, 121 - 9]
    for res in maps:  # every map equal to its own full recompute
        full = occlusion_map(model, image, patch_size=8, stride=res.stride, method="full")
        assert np.abs(res.scores - full.scores).max() <= 1e-4


def test_generator_closed_early_restores_mode():
    model = SmallCNN(c_in=3).train()
    gen = occlusion_maps(model, torch.randn(3, 32, 32), strides=(8, 4), patch_size=8)
    next(gen)
    gen.close()
    assert all(m.training for m in model.modules())


def test_oom_halves_batch(monkeypatch):
    from cnnviz_widgets.inspect import incremental

    model = SmallCNN(c_in=3).eval()
    image = torch.randn(3, 32, 32)
    real = incremental.IncrementalEngine.run
    calls = []

    def flaky(self, plan, start, stop, pv):
        calls.append(stop - start)
        if stop - start > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, plan, start, stop, pv)

    monkeypatch.setattr(incremental.IncrementalEngine, "run", flaky)
    res = occlusion_map(model, image, patch_size=4, stride=4, batch_size=32)
    assert res.batch_size == 8
    # after the engine's own check on two probe positions
    assert calls[0] == 2 and calls[1:4] == [32, 16, 8]  # 2: the probe (corner, centre)
    monkeypatch.undo()
    full = occlusion_map(model, image, patch_size=4, stride=4, method="full")
    np.testing.assert_allclose(res.scores, full.scores, atol=1e-6)


def test_captum_equivalent_shape_and_zero_outside():
    model = SmallCNN(c_in=3).eval()
    res = occlusion_map(model, torch.randn(3, 30, 30), patch_size=8, stride=8, placement="inside")
    attr = captum_equivalent(res, channels=3)
    assert attr.shape == (3, 30, 30)
    assert res.scores.shape == (4, 4)  # the 4th window [24, 32) is clipped to [24, 30)
    np.testing.assert_allclose(attr[:, 24:, 24:], res.base_score - res.scores[3, 3], atol=1e-7)
    res = occlusion_map(model, torch.randn(3, 30, 30), patch_size=8, stride=10, placement="inside")
    attr = captum_equivalent(res, channels=3)
    assert np.all(attr[:, 8:10, :] == 0) and np.all(attr[:, :, 8:10] == 0)  # between windows
    np.testing.assert_allclose(res.drop, res.base_score - res.scores)


# -------------------------------------------------------------------- CUDA (run by gpu_check.sh)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["resnet18", "vgg16", "alexnet"])
def test_cuda_exact(name):
    model = _randomize_bn(getattr(torchvision.models, name)(weights=None)).eval()
    image = torch.randn(3, 128, 128)
    assert_same_maps(model, image, patch_size=16, stride=8, device="cuda")
    assert all(p.device.type == "cpu" for p in model.parameters())  # moved back


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_channels_last_model_and_cuda_image():
    model = torchvision.models.resnet18(weights=None).eval().cuda()
    model = model.to(memory_format=torch.channels_last)
    image = torch.randn(3, 96, 128, device="cuda")
    assert_same_maps(model, image, patch_size=(16, 8), stride=(8, 16))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_reduced_precision_reports_error(precision):
    model = torchvision.models.resnet18(weights=None).eval().cuda()
    image = torch.randn(3, 128, 128, device="cuda")
    low = occlusion_map(model, image, patch_size=16, stride=8, precision=precision)
    ref = occlusion_map(model, image, patch_size=16, stride=8, method="full")
    err = float(np.abs(low.scores - ref.scores).max())
    assert low.precision_error is not None
    assert low.precision_error <= err + 1e-6
    assert err <= 5e-3, err
