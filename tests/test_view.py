"""The user's model is never touched: flags, device, hooks, weights (every job runs on a view)."""

from __future__ import annotations

import contextlib
import copy
import threading

import pytest
import torch
from torch import nn

from cnnviz_widgets.inspect import (
    capture,
    eval_view,
    extract_features,
    layer_catalogue,
    receptive_field,
    top_activations,
)
from cnnviz_widgets.inspect.occlusion import occlusion_map
from cnnviz_widgets.inspect.predict import class_probabilities


def _state(model: nn.Module):
    """What the user could see of their model: flags, hooks, tensors (by identity and value)."""
    return (
        [m.training for m in model.modules()],
        [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        [(id(t), t.device, t.detach().clone()) for t in [*model.parameters(), *model.buffers()]],
    )


def _same(a, b) -> None:
    assert a[0] == b[0], "training flags changed"
    assert a[1] == b[1], "hooks were left on (or taken off) the model"
    assert [(i, d) for i, d, _ in a[2]] == [(i, d) for i, d, _ in b[2]], "tensors replaced"
    for (_, _, x), (_, _, y) in zip(a[2], b[2], strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def _mixed(model: nn.Module) -> nn.Module:
    model.train()
    model.dropout.eval()  # a mixed state must stay exactly as it is
    return model


@pytest.fixture
def user_model(demo):
    return _mixed(copy.deepcopy(demo[0]))


def test_a_view_computes_what_the_eval_model_computes_and_shares_its_weights(demo, user_model):
    x = torch.stack([demo[1][i][0] for i in range(4)])
    view = eval_view(user_model)
    reference = copy.deepcopy(user_model).eval()
    with torch.no_grad():
        torch.testing.assert_close(view(x), reference(x), rtol=0, atol=0)
    assert user_model.training and not view.training and not view.conv1.training
    assert view.conv1.weight is user_model.conv1.weight
    with torch.no_grad():  # a weight the user updates in place is what the view computes with
        user_model.conv1.weight.mul_(-1)
        reference.conv1.weight.mul_(-1)
        torch.testing.assert_close(view(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize("device", ["meta", "no-such-device"])
def test_a_device_the_model_cannot_run_on_leaves_the_model_as_it_was(demo, user_model, device):
    image = demo[1][0][0]
    before = _state(user_model)
    jobs = [
        lambda: capture(user_model, image, "conv2", device=device),
        lambda: class_probabilities(user_model, image, device=device),
        lambda: occlusion_map(user_model, image, patch_size=8, stride=8, device=device),
        lambda: layer_catalogue(user_model, image, device=device),
        lambda: extract_features(user_model, demo[1], layer="fc1", device=device, progress=False),
    ]
    for job in jobs:
        if device == "meta":  # shapes only: some jobs finish (a catalogue), others cannot
            with contextlib.suppress(RuntimeError, NotImplementedError, ValueError):
                job()
        else:
            with pytest.raises(RuntimeError, match=device):
                job()
        _same(before, _state(user_model))  # before, the weights were gone: moved to meta


def test_every_function_leaves_flags_hooks_and_weights_alone(demo, user_model):
    image = demo[1][0][0]
    before = _state(user_model)
    capture(user_model, image, ["conv1", "conv2"])
    class_probabilities(user_model, image)
    occlusion_map(user_model, image, patch_size=8, stride=8)
    layer_catalogue(user_model, image)
    receptive_field(user_model, "conv2", input_size=image.shape[-2:])
    extract_features(user_model, demo[1], layer="fc1", progress=False)
    top_activations(user_model, demo[1], "conv2", k=2, progress=False)
    _same(before, _state(user_model))


def test_the_users_own_hooks_still_run_but_ours_stay_on_the_view(demo, user_model):
    image = demo[1][0][0]
    calls = []
    handle = user_model.conv2.register_forward_hook(lambda m, a, out: calls.append(out.shape))
    got = capture(user_model, image, "conv2")["conv2"]
    handle.remove()
    assert calls == [got.shape]  # the user's hook saw the forward it is part of
    assert len(user_model.conv2._forward_hooks) == 0


def test_weight_norm_models_compute_through_their_hooks_and_parametrizations(demo):
    from torch.nn.utils import parametrizations

    model = copy.deepcopy(demo[0]).eval()
    with pytest.warns(FutureWarning):
        torch.nn.utils.weight_norm(model.conv1)  # the old API: a forward pre-hook
    parametrizations.weight_norm(model.conv2)  # the new one: a parametrization
    x = demo[1][0][0][None]
    with torch.no_grad():
        expected = {"conv1": model.conv1(x), "fc": model(x)}
    got = capture(model, x, ["conv1", "fc"])
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0)


def test_tied_and_shared_modules_stay_tied_on_the_view():
    shared = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    view = eval_view(model)
    assert view[0] is view[2] and view[0] is not shared
    assert view[0].weight is shared.weight


def test_a_model_trained_in_another_thread_keeps_its_own_flags(demo):
    # the user trains (and flips .train()/.eval()) while every function runs on the model
    model = copy.deepcopy(demo[0])
    dataset = demo[1]
    x = torch.stack([dataset[i][0] for i in range(32)])
    y = torch.tensor([dataset[i][1] for i in range(32)])
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    stop, steps, errors = threading.Event(), [0], []

    def train():
        try:
            while not stop.is_set():
                model.train() if steps[0] % 2 == 0 else model.eval()
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimiser.step()
                steps[0] += 1
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        for _ in range(3):
            capture(model, x[:1], "conv2")
            class_probabilities(model, x[0])
            occlusion_map(model, x[0], patch_size=8, stride=8)
            layer_catalogue(model, x[0])
            extract_features(model, dataset, layer="fc1", progress=False)
    finally:
        stop.set()
        trainer.join(30)
    assert errors == [] and steps[0] > 0
    mode = steps[0] % 2 == 1  # the flag the trainer set last
    assert all(m.training == mode for m in model.modules())
    assert all(len(m._forward_hooks) + len(m._forward_pre_hooks) == 0 for m in model.modules())
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated
def test_a_torchscript_model_gets_a_clear_error():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    with pytest.raises(TypeError, match="TorchScript"):
        eval_view(scripted)


def test_occlusion_map_widget_on_a_train_mode_model_maps_the_eval_model(demo):
    # dropout in train mode would make every occluded forward random; GoogLeNet in train mode
    # returns GoogLeNetOutputs: the widget computes the eval model's map and leaves the flags
    from cnnviz_widgets import OcclusionMap

    model = _mixed(copy.deepcopy(demo[0]))
    model.dropout.train()
    image = demo[1][3][0]
    reference = occlusion_map(copy.deepcopy(model).eval(), image, patch_size=8, stride=4)
    widget = OcclusionMap(model, image, patch_size=8, strides=[4])
    try:
        got = widget.wait()
    finally:
        widget.close()
    assert got.target == reference.target
    torch.testing.assert_close(got.scores, reference.scores, rtol=0, atol=1e-5)
    assert all(m.training for m in model.modules())


def test_googlenet_in_train_mode_gives_class_scores():
    from torchvision.models import googlenet

    torch.manual_seed(0)
    model = googlenet(weights=None, aux_logits=True, init_weights=True).train()
    image = torch.rand(3, 64, 64)
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(image[None]).softmax(1)[0]
    probs = class_probabilities(model, image)
    torch.testing.assert_close(torch.from_numpy(probs), expected, rtol=0, atol=1e-6)
    assert model.training and model.aux1.training
