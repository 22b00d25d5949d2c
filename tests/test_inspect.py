"""The inspector core: capture, state restoration, the layer catalogue, input checks."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision.models import alexnet, resnet18
from torchvision.models.feature_extraction import create_feature_extractor

from cnnviz_widgets.inspect import (
    ActivationCapture,
    capture,
    layer_catalogue,
    resolve_layer,
    spatial_layer,
    to_batch,
)


def test_capture_equals_running_the_subnetwork(demo):
    model, dataset, _ = demo
    x = torch.stack([dataset[i][0] for i in range(8)])
    with ActivationCapture(model, ["conv2", model.relu3]) as cap:
        out = cap(x)
    with torch.no_grad():
        conv2 = model.conv2(model.pool1(model.relu1(model.conv1(x))))
        relu3 = model.relu3(model.conv3(model.pool2(model.relu2(conv2))))
    assert set(out) == {"conv2", "relu3"}
    torch.testing.assert_close(out["conv2"], conv2, rtol=0, atol=0)
    torch.testing.assert_close(out["relu3"], relu3, rtol=0, atol=0)
    torch.testing.assert_close(cap.logits, model(x).detach())


def test_capture_matches_torchvision_feature_extractor():
    model = resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 80)
    ours = capture(model, x, ["layer2", "layer4.1.bn2"])
    ref = create_feature_extractor(model, {"layer2": "a", "layer4.1.bn2": "b"})(x)
    torch.testing.assert_close(ours["layer2"], ref["a"])
    torch.testing.assert_close(ours["layer4.1.bn2"], ref["b"])


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_the_model_is_untouched_inside_the_block_and_after_an_exception(demo):
    model, dataset, _ = demo
    model.train()
    model.fc1.eval()  # a mixed state stays exactly as it is
    before = {n: m.training for n, m in model.named_modules()}
    torch.set_grad_enabled(True)
    with pytest.raises(RuntimeError, match="boom"), ActivationCapture(model, "conv1") as cap:
        assert _hook_count(model) == 0 and len(cap.modules["conv1"]._forward_hooks) == 1
        assert {n: m.training for n, m in model.named_modules()} == before
        assert not any(m.training for m in cap.modules.values())
        cap(dataset[0][0])
        assert torch.is_inference_mode_enabled()
        raise RuntimeError("boom")
    assert _hook_count(model) == 0
    assert {n: m.training for n, m in model.named_modules()} == before
    assert torch.is_grad_enabled()
    model.eval()


def test_batchnorm_statistics_untouched_by_a_train_mode_model():
    model = resnet18(weights=None).train()
    mean = model.bn1.running_mean.clone()
    capture(model, torch.randn(1, 3, 32, 32) * 5 + 3, "layer1")
    torch.testing.assert_close(model.bn1.running_mean, mean, rtol=0, atol=0)
    assert model.training and model.bn1.training


def test_device_argument_runs_there_and_returns_cpu_tensors(demo):
    model, dataset, _ = demo
    out = capture(model, dataset[0][0], "conv1", device="cpu")
    assert out["conv1"].device.type == "cpu"
    assert next(model.parameters()).device.type == "cpu"


def test_unknown_layer_lists_the_valid_names(demo):
    model, _, _ = demo
    with pytest.raises(ValueError, match=r"Unknown layer 'conv9'.*conv1, relu1, pool1, conv2"):
        resolve_layer(model, "conv9")
    with pytest.raises(ValueError, match="not in the model"):
        resolve_layer(model, nn.Conv2d(1, 1, 1))


def test_layer_with_no_feature_map_is_refused_with_the_choices(demo):
    model, dataset, _ = demo
    cat = layer_catalogue(model, dataset[0][0])
    with pytest.raises(ValueError, match=r"'fc1' has output shape \(128,\).*conv1, relu1"):
        spatial_layer(model, "fc1", cat)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(32, 32), r"got a tensor of shape \(32, 32\)"),
        (torch.zeros(1, 1, 1, 32, 32), r"got a tensor of shape \(1, 1, 1, 32, 32\)"),
        (torch.zeros(1, 32, 32, dtype=torch.uint8), "floating-point"),
        (torch.zeros(3, 32, 32), r"expects 1 input channel\(s\).*\(3, 32, 32\)"),
        ("digit.png", "got str"),
    ],
)
def test_non_image_input_names_the_shape_and_the_accepted_ones(demo, bad, message):
    model, _, _ = demo
    with pytest.raises(ValueError, match=message) as err:
        capture(model, bad, "conv1")
    assert (
        "(C, H, W) or (N, C, H, W)" in str(err.value)
        or "floating-point" in message
        or ("channel" in message)
    )


def test_pil_image_and_chw_and_nchw_inputs_agree():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    from_pil = to_batch(img, channels=3)
    assert from_pil.shape == (1, 3, 20, 30) and from_pil.dtype == torch.float32
    np.testing.assert_allclose(
        from_pil[0].permute(1, 2, 0).numpy() * 255, np.asarray(img), atol=1e-3
    )
    assert to_batch(from_pil[0]).shape == (1, 3, 20, 30)
    gray = to_batch(img, channels=1)
    assert gray.shape == (1, 1, 20, 30)
    assert to_batch(img, transform=lambda im: torch.ones(3, 5, 5)).shape == (1, 3, 5, 5)


def test_catalogue_shapes_are_the_analytic_ones():
    cat = {i.name: i for i in layer_catalogue(resnet18(weights=None), input_size=224)}
    assert cat["conv1"].output_shape == (64, 112, 112)
    assert cat["maxpool"].output_shape == (64, 56, 56)
    assert cat["layer3"].output_shape == (256, 14, 14)
    assert cat["layer4"].output_shape == (512, 7, 7)
    assert cat["fc"].output_shape == (1000,) and not cat["fc"].is_spatial
    assert cat["layer1.0.conv1"].type == "Conv2d" and cat["layer1.0.conv1"].params == 64 * 64 * 9
    names = list(cat)
    assert names.index("conv1") < names.index("layer1") < names.index("layer1.0.conv1")
    alex = {i.name: i for i in layer_catalogue(alexnet(weights=None), input_size=(224, 224))}
    assert alex["features.0"].output_shape == (64, 55, 55)
    assert alex["features.10"].output_shape == (256, 13, 13)
    assert alex["features.12"].output_shape == (256, 6, 6)


def test_catalogue_leaves_out_modules_the_forward_never_calls(demo):
    model, dataset, _ = demo
    model.spare = nn.Conv2d(1, 1, 1)
    try:
        names = [i.name for i in layer_catalogue(model, dataset[0][0])]
    finally:
        del model.spare
    assert "spare" not in names and "conv1" in names and "fc" in names
    assert _hook_count(model) == 0


def test_capture_is_not_rewritten_by_later_inplace_ops():
    model = alexnet(weights=None).eval()
    x = torch.randn(1, 3, 96, 96)
    conv = capture(model, x, "features.0")["features.0"]  # followed by ReLU(inplace=True)
    with torch.no_grad():
        ref = model.features[0](x)
    assert (ref < 0).any()
    torch.testing.assert_close(conv, ref)


def test_capture_ignores_forwards_from_other_threads(demo):
    # the explorer computes occlusion maps on a worker thread with the same model
    import threading

    model, dataset, _ = demo
    image, other = dataset[0][0][None], dataset[1][0][None]
    with ActivationCapture(model, "conv2") as cap:
        worker = threading.Thread(target=lambda: model(other))
        worker.start()
        worker.join()
        assert cap.outputs == {}
        got = cap(image)["conv2"]
    torch.testing.assert_close(got, capture(model, image, "conv2")["conv2"], rtol=0, atol=0)


def test_overlapping_captures_never_touch_the_models_flags(demo):
    # the explorer: feature maps on the main thread while the occlusion worker runs; each
    # runs an eval view, so the user's (mixed) training flags are never changed, not even inside
    import threading

    model = demo[0]
    model.train()
    model.dropout.eval()
    flags = [m.training for m in model.modules()]
    image = demo[1][0][0]
    inside, leave = threading.Event(), threading.Event()

    def worker():
        with ActivationCapture(model, "conv2") as cap:
            cap(image)
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(10)
    with ActivationCapture(model, "conv1") as cap:
        assert [m.training for m in model.modules()] == flags
        assert not any(m.training for m in cap.modules.values())
        leave.set()
        t.join()
    assert [m.training for m in model.modules()] == flags
    model.eval()


def test_a_trace_leaves_other_threads_modules_alone():
    # torch.fx patches nn.Module.__call__ for the whole process while it traces: the occlusion
    # worker's forward must still get real tensors while the main thread traces
    import threading

    from cnnviz_widgets.inspect.incremental import trace

    started, go = threading.Event(), threading.Event()

    class Gate(nn.Module):
        def forward(self, x):
            started.set()
            go.wait(10)  # the trace is in progress until the other thread has run
            return x

    model = nn.Sequential(Gate(), nn.Conv2d(1, 2, 3))
    tracer = threading.Thread(target=lambda: trace(model))
    tracer.start()
    assert started.wait(10)
    other = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    x = torch.randn(1, 1, 8, 8)
    try:
        out = other(x)
        weight = other[0].weight
    finally:
        go.set()
        tracer.join()
    assert isinstance(out, torch.Tensor) and isinstance(weight, torch.Tensor)
    torch.testing.assert_close(out, torch.relu(F.conv2d(x, weight, other[0].bias)))
