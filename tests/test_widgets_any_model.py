"""#10's 'done when': every widget opens without error on the models people try first (the
PyTorch CIFAR-10 tutorial net and four modern torchvision families), and what it shows is the
model's own answer (feature maps = a forward hook, occlusion = the full batched recompute)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.data import TensorDataset

from cnnviz_widgets import CNNExplorer, FeatureMaps, OcclusionMap, TopPatches
from cnnviz_widgets.inspect.layers import default_layer
from cnnviz_widgets.inspect.occlusion import occlusion_map
from cnnviz_widgets.widgets.patches import layer_choices

from .zoo_models import CifarTutorialNet, calibrate

MODELS = {
    "cifar_tutorial": (lambda: CifarTutorialNet(), 32),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), 64),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(weights=None), 64),
    "regnet_y_400mf": (lambda: torchvision.models.regnet_y_400mf(weights=None), 64),
    "convnext_tiny": (lambda: torchvision.models.convnext_tiny(weights=None), 64),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_widget_opens_and_shows_the_models_own_answer(name):
    build, size = MODELS[name]
    torch.manual_seed(0)
    images = torch.rand(6, 3, size, size)
    model = calibrate(build().eval(), images)  # maps that are not flat at random init
    dataset = TensorDataset(images, torch.arange(6) % 3)
    layer = default_layer(model, layer_choices(model, images[0]))

    maps = FeatureMaps(model, images[1], layer)
    captured = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, a, out: captured.setdefault("out", out.detach().clone())
    )
    with torch.no_grad():
        model(images[1:2])
    handle.remove()
    torch.testing.assert_close(
        torch.as_tensor(maps.activations), captured["out"][0], rtol=1e-4, atol=1e-5
    )

    patches = TopPatches(model, dataset, layer, 2, progress=False).wait(300)
    assert patches.n_tiles > 0
    patches.close()

    view = OcclusionMap(model, images[2], patch_size=size // 4, strides=[size // 4])
    expected = occlusion_map(
        model, images[2], patch_size=size // 4, stride=size // 4, method="full", target=view.target
    )
    got = view.wait(300)
    view.close()
    torch.testing.assert_close(
        torch.as_tensor(got.scores), torch.as_tensor(expected.scores), rtol=0, atol=1e-4
    )

    explorer = CNNExplorer(model, dataset, method="pca", progress=False, layer=layer)
    explorer.selected_index = 4
    explorer.wait(300)
    assert explorer.selected_info["index"] == 4
    explorer.close()
