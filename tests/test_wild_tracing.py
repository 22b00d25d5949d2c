"""Code copied from CIFAR model collections keeps its receptive fields and occlusion maps.

For each model of `tests/wild_models.py` (a module made in forward, ``x.data.size()``, cells
called with ``(x, None)``, squeeze-excite gates pooled with a size read from the map or
flattened through Linear layers and expanded back, TorchScript blocks, a block that branches
on values), held in train mode to catch any change to it:

* every layer with a (C, H, W) output has a receptive field (exact, a bound, the whole image;
  a 1x1 map pooled from the whole map has none and says so), and the input pixels with a
  nonzero gradient of a few of its units (autograd, over a few random images) lie inside
  their fields, tightly for an exact field on at least one unit;
* the explorer's default layer is a map with a grid;
* occlusion by the incremental engine equals full recompute (1e-4), and the model is left as
  it was: weights and statistics, training flags, hooks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_widgets.inspect import ActivationCapture, layer_catalogue
from cnnviz_widgets.inspect.layers import default_layer
from cnnviz_widgets.inspect.occlusion import occlusion_map
from cnnviz_widgets.inspect.receptive import analyse_fields
from cnnviz_widgets.widgets.patches import layer_choices

from .wild_models import WILD, _PythonDown, _ValueBranch

SIZE = 32
#: what each model must show; "gated": the layers after a squeeze-excite gate are marked so
EXPECT = {
    "se_pool_size": {"gated": ["layer1", "layer2.conv1", "layer2"]},
    "se_linear_expand": {"gated": ["block1", "block2.conv", "block2", "conv"]},
    "torchscript_blocks": {"exact": ["block1", "block2", "conv"]},
    "value_branch": {"exact": ["block.conv1", "block.conv2", "block.pool", "block", "conv"]},
}


def _init(model: nn.Module, seed: int) -> None:
    """He-normal conv and linear weights, small random biases, random BatchNorm affine maps
    and statistics: TorchScript blocks' too (by parameter name)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def _hooks(model: nn.Module) -> list[int]:
    return [
        len(getattr(m, "_forward_hooks", {})) + len(getattr(m, "_forward_pre_hooks", {}))
        for m in model.modules()
    ]


def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        _hooks(model),
        {k: v.detach().clone() for k, v in model.state_dict().items()},
    )


class Wild:
    """A wild model (train mode, He init, random BatchNorm statistics) and its image."""

    def __init__(self, name: str) -> None:
        self.name = name
        seed = sum(map(ord, name))
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script's deprecation
            self.model = WILD[name]()
        _init(self.model, seed)
        self.model.train()
        g = torch.Generator().manual_seed(seed)
        self.image = torch.randn(3, SIZE, SIZE, generator=g)
        self.before = _state(self.model)


@pytest.fixture(scope="module", params=sorted(WILD))
def wild(request) -> Wild:
    return Wild(request.param)


def _probe_units(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    _, oh, ow = shape
    return sorted({(0, 0), (oh // 2, ow // 2), (oh - 1, ow - 1)})


def _supports(model: nn.Module, names: list[str], units: dict) -> dict:
    """(layer, unit) -> (y0, y1, x0, x1) of the input pixels with a nonzero gradient of the
    unit's channels, over four random images (None where the gradient is zero)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, SIZE, SIZE, generator=g)
    boxes = {}
    with ActivationCapture(model, names, grad=True) as cap:
        outs = cap(x)
        for name in names:
            for i, j in units[name]:
                (grad,) = torch.autograd.grad(
                    outs[name][:, :, i, j].sum(), cap.input, retain_graph=True
                )
                ys, xs = torch.nonzero(grad.abs().sum((0, 1)), as_tuple=True)
                boxes[name, (i, j)] = (
                    None
                    if len(ys) == 0
                    else (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
                )
    return boxes


def test_every_spatial_layer_has_a_field_the_gradient_stays_in(wild: Wild):
    model, image = wild.model, wild.image
    catalogue = [i for i in layer_catalogue(model, image[None]) if i.is_spatial]
    analysis = analyse_fields(model, SIZE)
    fields, missing = {}, []
    for info in catalogue:
        try:
            fields[info.name] = analysis.field(info.name)
        except ValueError as e:
            if info.output_shape[1:] == (1, 1) and "has no spatial output" in str(e):
                continue  # pooled from the whole map: a squeeze-excite's 1x1 convs
            missing.append(f"{info.name} ({info.type}, {info.output_shape}): {e}")
    assert not missing, "\n".join(missing)
    assert len(fields) >= 4
    for name, rf in fields.items():
        shape = next(i.output_shape for i in catalogue if i.name == name)
        assert tuple(rf.output_shape) == tuple(shape), name
    expect = EXPECT.get(wild.name, {})
    for name in expect.get("gated", []):
        assert fields[name].gated and fields[name].exact, (name, fields[name])
    for name in expect.get("exact", []):
        assert fields[name].exact and not fields[name].gated, (name, fields[name])
    assert not any(rf.kind == "image" for rf in fields.values()), fields

    # the gradient: a gate's gradient reaches the whole image by definition (not probed)
    probed = [n for n, rf in fields.items() if not rf.gated and rf.output_shape[1:] != (1, 1)]
    units = {n: _probe_units(fields[n].output_shape) for n in probed}
    seen = _supports(model, probed, units)
    bad, loose = [], []
    for name in probed:
        rf, tight = fields[name], False
        for i, j in units[name]:
            box = seen[name, (i, j)]
            if box is None:
                continue
            y0, y1, x0, x1 = rf.clipped_box(i, j)
            if box[0] < y0 or box[1] > y1 or box[2] < x0 or box[3] > x1:
                bad.append(f"{name} ({i}, {j}): gradient {box} outside {rf.clipped_box(i, j)}")
            tight = tight or box == (y0, y1, x0, x1)
        if rf.exact and not tight:
            loose.append(f"{name}: {rf.describe()} holds no unit's gradient tightly")
    assert not bad, "\n".join(bad)
    assert not loose, "\n".join(loose)
    assert _state(model)[:2] == wild.before[:2]


def test_the_default_layer_is_a_map_with_a_grid(wild: Wild):
    choices = layer_choices(wild.model, wild.image[None])
    layer = default_layer(wild.model, choices)
    info = next(i for i in layer_catalogue(wild.model, wild.image[None]) if i.name == layer)
    assert info.is_spatial and info.output_shape[1] * info.output_shape[2] > 1, info
    assert len(choices) >= 4


def test_occlusion_incremental_equals_full_and_the_model_is_unchanged(wild: Wild, monkeypatch):
    from cnnviz_widgets.inspect import occlusion

    if hasattr(occlusion, "MIN_FLOP_BOUND"):  # run the engine even where it would not pay
        monkeypatch.setattr(occlusion, "MIN_FLOP_BOUND", 0.0)
    kw = dict(patch_size=8, stride=4, baseline=0.5, output="prob")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inc = occlusion_map(wild.model, wild.image, **kw)
    full = occlusion_map(wild.model, wild.image, method="full", **kw)
    assert inc.method == "incremental", [str(w.message) for w in caught]
    assert inc.target == full.target
    assert float(np.abs(inc.scores - full.scores).max()) <= 1e-4
    assert abs(inc.base_score - full.base_score) <= 1e-4
    assert float(np.ptp(full.scores)) > 1e-3  # the patch changes the score: not vacuous
    training, hooks, weights = _state(wild.model)
    assert training == wild.before[0] and all(training)
    assert hooks == wild.before[1] and not any(hooks)
    assert weights.keys() == wild.before[2].keys()
    for k, v in weights.items():
        assert torch.equal(v, wild.before[2][k]), k


# ------------------------------------------------------------------ the pieces, one by one


def test_traced_graphs_compute_what_the_models_compute():
    from cnnviz_widgets.inspect.tracing import trace
    from cnnviz_widgets.inspect.view import eval_view

    x = torch.randn(2, 3, SIZE, SIZE)
    for name in sorted(WILD):
        model = Wild(name).model
        view = eval_view(model)
        traced = trace(view, x[:1])
        calls = {str(n.target) for n in traced.gm.graph.nodes if n.op == "call_module"}
        assert calls <= {n for n, _ in view.named_modules()}, name  # none made in forward
        opaque = {"torchscript_blocks": {"block1", "block2"}, "value_branch": {"block"}}
        assert {n.split(" ")[0] for n in traced.leaves} == opaque.get(name, set()), name
        assert not traced.unfaithful
        with torch.no_grad():
            torch.testing.assert_close(traced.gm(x), view(x), rtol=1e-5, atol=1e-5)
    # a TorchScript block in train mode runs as an eval-mode copy; in eval mode, as it is
    model = Wild("torchscript_blocks").model
    assert eval_view(model).block1.script is not model.block1 and model.block1.training
    assert eval_view(model.eval()).block1.script is model.block1


class _Basic(nn.Module):
    """`wild_models._ScriptedBasic` in Python."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class _Straight(_ValueBranch):
    """`wild_models._ValueBranch` without its branch: traceable."""

    def forward(self, x):
        return self.pool(self.conv2(F.relu(self.conv1(x))))


def _twins():
    script = WILD["torchscript_blocks"]()
    python = WILD["torchscript_blocks"]()
    python.block1, python.block2 = _Basic(8), _PythonDown(8, 16)
    branch, straight = WILD["value_branch"](), WILD["value_branch"]()
    straight.block = _Straight(8, 16)
    return [
        (script, python, ["block1", "block2", "conv"]),
        (branch, straight, ["block.conv1", "block.conv2", "block.pool", "block", "conv"]),
    ]


@pytest.mark.parametrize("size", [32, (29, 36)])
def test_measured_geometry_equals_the_traced_one(size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twins = _twins()
    for opaque, traced, names in twins:
        measured, reference = analyse_fields(opaque, size), analyse_fields(traced, size)
        for name in names:
            got, want = measured.field(name), reference.field(name)
            assert (got.size, got.stride, got.offset, got.kind, got.output_shape) == (
                want.size, want.stride, want.offset, want.kind, want.output_shape,
            ), name  # fmt: skip


class _SE(nn.Module):
    """One conv and a squeeze-excite gate, spelt as `how` says."""

    def __init__(self, c_in: int, c: int, stride: int, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(c_in, c, 3, stride, 1)
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)
        self.lin1, self.lin2 = nn.Linear(c, c // 4), nn.Linear(c // 4, c)

    def forward(self, x):
        out = F.relu(self.conv(x))
        n, c = out.shape[:2]
        if self.how == "adaptive":
            w = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(out, 1)))))
        elif self.how == "avg_pool_size":
            w = torch.sigmoid(self.fc2(F.relu(self.fc1(F.avg_pool2d(out, out.size(2))))))
        elif self.how == "max_pool_size":
            w = F.max_pool2d(out, (out.size(2), out.size(3)))
            w = torch.sigmoid(self.fc2(F.relu(self.fc1(w)))).expand_as(out)
        else:
            w = out.mean((2, 3)) if self.how == "mean_linear" else out.view(n, c, -1).mean(-1)
            w = torch.sigmoid(self.lin2(F.relu(self.lin1(w)))).view(n, c, 1, 1).expand_as(out)
        return out * w


class _SENet(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.se1, self.se2 = _SE(3, 8, 1, how), _SE(8, 8, 2, how)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(self.se2(self.se1(x)))


@pytest.mark.parametrize("how", ["avg_pool_size", "max_pool_size", "mean_linear", "view_mean"])
def test_squeeze_excite_spellings_give_the_adaptive_pools_fields(how):
    want = analyse_fields(_SENet("adaptive"), (24, 24))
    got = analyse_fields(_SENet(how), (24, 24))
    for name in ("se1.conv", "se1", "se2.conv", "se2", "conv"):
        a, b = got.field(name), want.field(name)
        assert (a.size, a.stride, a.offset, a.gated, a.kind) == (
            b.size, b.stride, b.offset, b.gated, b.kind,
        ), name  # fmt: skip
    assert got.field("se2").gated and not got.field("se1.conv").gated


def test_a_one_unit_map_broadcast_into_a_sum_is_a_bound_not_an_error():
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.corner = nn.Conv2d(1, 1, 2, stride=8)  # 8x8 -> 1x1, reads rows 0..1 only
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(self.conv(x) + self.corner(x))

    rf = analyse_fields(Local(), 8, channels=1).field("out")
    # the one window [0, 2) seen from units 0..7 at stride 1 (from -7 to 2), joined to the
    # conv's [o - 1, o + 2)
    assert rf.kind == "bound" and (rf.size, rf.stride, rf.offset) == ((9, 9), (1, 1), (-7, -7))


class _Opaque(nn.Module):
    """A block that branches on values around `inner` (so that it stays opaque)."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if x.mean() > 100:
            x = x / x.mean()
        return self.inner(x)


class _Mix(nn.Module):
    def forward(self, x):
        return x * torch.softmax(x.flatten(2), -1).view_as(x)


class _RefusesNaN(nn.Module):
    def forward(self, x):
        if torch.isnan(x).any():
            raise ValueError("NaN in the input")
        return x


def _opaque_model(inner: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1), _Opaque(inner), nn.Conv2d(2, 2, 3, padding=1))


def test_an_opaque_upsampling_is_a_bound_that_holds_the_gradient():
    model = _opaque_model(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3)))
    analysis = analyse_fields(model, 16, channels=1)
    for name in ("1", "1.inner.0", "1.inner", "2"):
        rf = analysis.field(name)
        assert rf.kind == "bound" and "opaque" in rf.note, (name, rf)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 1, 16, 16, generator=g).requires_grad_(True)
        with ActivationCapture(model, [name], grad=True) as cap:
            out = cap(x)[name]
            for i, j in _probe_units(rf.output_shape):
                (grad,) = torch.autograd.grad(out[:, :, i, j].sum(), cap.input, retain_graph=True)
                ys, xs = torch.nonzero(grad.abs().sum((0, 1)), as_tuple=True)
                y0, y1, x0, x1 = rf.clipped_box(i, j)
                assert y0 <= int(ys.min()) and int(ys.max()) < y1, (name, i, j)
                assert x0 <= int(xs.min()) and int(xs.max()) < x1, (name, i, j)


def test_an_opaque_whole_map_mix_is_the_whole_image_and_a_refusal_is_named():
    analysis = analyse_fields(_opaque_model(_Mix()), 16, channels=1)
    assert analysis.field("1").kind == analysis.field("2").kind == "image"
    analysis = analyse_fields(_opaque_model(_RefusesNaN()), 16, channels=1)
    assert analysis.field("0").exact
    with pytest.raises(ValueError, match=r"measuring it failed \(ValueError: NaN in the input\)"):
        analysis.field("1")
