"""Features of a model without nn.Linear (#19 part 2): a 1x1-conv classifier before global
pooling, as in SqueezeNet; the layer taken by default is named, another one can be asked for,
and a spatial layer's features are its global average pool, computed here by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cnnviz_widgets import CNNExplorer, EmbeddingExplorer, extract_features
from cnnviz_widgets.inspect.features import feature_pass


class Squeeze(nn.Module):
    """SqueezeNet's shape, small: convolutions, then Dropout, a 1x1 conv to the classes, ReLU
    and global average pooling; no nn.Linear anywhere."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(12, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


@pytest.fixture(scope="module")
def squeeze():
    torch.manual_seed(0)
    model = Squeeze().eval()
    images = torch.rand(36, 3, 16, 16)
    return model, TensorDataset(images, torch.arange(36) % 4), images


def pooled(module: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The global average pool of `module`'s output, by hand."""
    with torch.no_grad():
        return module(images).mean(dim=(2, 3)).numpy()


def test_the_explorer_opens_on_the_classifiers_input_pooled(squeeze):
    model, dataset, images = squeeze
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = CNNExplorer(model, dataset, method="pca", progress=False)
    x.wait(60)
    assert x.feature_layer == "classifier.1"  # the 1x1 conv: its input is the features
    assert "input of classifier.1, average-pooled · 12 features" in x.embedding.caption
    by_hand = pooled(model.features, images)  # Dropout is the identity in eval mode
    np.testing.assert_allclose(x.embedding.features.features, by_hand, atol=1e-6)
    with torch.no_grad():
        predicted = model(images).argmax(dim=1).numpy()
    np.testing.assert_array_equal(x.embedding.features.predictions, predicted)
    np.testing.assert_allclose(extract_features(model, dataset, progress=False), by_hand, atol=1e-6)
    x.close()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_a_named_feature_layer_is_taken_and_read_back(squeeze):
    model, dataset, images = squeeze
    x = CNNExplorer(model, dataset, method="pca", progress=False, feature_layer="features.2")
    x.wait(60)
    assert x.feature_layer == "features.2"
    assert "features.2, average-pooled · 8 features" in x.embedding.caption
    by_hand = pooled(model.features[:3], images)
    np.testing.assert_allclose(x.embedding.features.features, by_hand, atol=1e-6)
    x.close()
    emb = EmbeddingExplorer(model, dataset, layer="features.2", method="pca", background=False)
    assert emb.feature_layer == "features.2"
    np.testing.assert_allclose(emb.features.features, by_hand, atol=1e-6)
    emb.close()
    with pytest.raises(ValueError, match=r"Unknown layer 'features\.9'"):
        CNNExplorer(model, dataset, method="pca", feature_layer="features.9")


def test_a_layers_input_and_output_are_cached_apart(demo):
    model, dataset, _ = demo
    penultimate = feature_pass(model, dataset, progress=False)  # the input of fc
    logits = feature_pass(model, dataset, "fc", progress=False)  # fc's output
    assert penultimate.source == "input of fc" and logits.source == "fc"
    assert penultimate.features.shape[1] == 128 and logits.features.shape[1] == 10
