"""The lecture's claims, measured on the trained EfficientNet-Lite0 and the shipped photos.

One test per claim of CS231n's *Visualizing and Understanding* that the widgets' defaults
must make visible. (Oriented first-layer filters: tests/test_gabor.py; occlusion drops on the
object: tests/test_photos.py; small, coherent top patches: tests/test_lecture_patches.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("timm", reason="the photo demo needs its extra: pip install -e '.[photos]'")

from cnnviz_widgets import FeatureMaps
from cnnviz_widgets.demo import load_photos
from cnnviz_widgets.inspect import capture
from cnnviz_widgets.inspect.embedding import knn_agreement
from cnnviz_widgets.inspect.features import feature_pass

#: a few strong channels: the strongest 5% of channels hold this many times their even share
STRONG_SHARE, STRONG_FACTOR = 0.05, 3.0


@pytest.fixture(scope="module")
def demo():
    return load_photos()


def strongest_share(maps: torch.Tensor, share: float = STRONG_SHARE) -> torch.Tensor:
    """Per image of (B, C, H, W) maps: the fraction of the total activation held by the
    strongest `share` of channels (by their summed activation)."""
    mass = maps.clamp(min=0).sum(dim=(2, 3)).sort(dim=1, descending=True).values
    top = max(1, round(share * maps.shape[1]))
    return mass[:, :top].sum(dim=1) / mass.sum(dim=1)


def test_the_default_activation_grid_is_sparse_with_a_few_strong_channels(demo):
    model, dataset, _ = demo
    maps = FeatureMaps(model, dataset[0][0])  # the default layer, as a student opens it
    layer = maps.layer
    assert maps.kind == "post-activation" and "% silent" in maps.caption
    maps.close()
    images = torch.stack([dataset[i][0] for i in range(0, len(dataset), 13)])  # 24 photos
    out = capture(model, images, [layer, "blocks.4"])
    zeros = (out[layer] == 0).float().mean(dim=(1, 2, 3))
    strong = strongest_share(out[layer])
    print(f"{layer}: zero share median {zeros.median():.2f} (min {zeros.min():.2f}); the "
          f"top 5% of channels hold {strong.median():.2f} of the activation")  # fmt: skip
    assert (zeros >= 0.5).all(), "at least half the units are zero on every photo"
    assert strong.median() >= STRONG_FACTOR * STRONG_SHARE
    # the contrast the default avoids: the linear bottleneck has no silent unit
    assert (out["blocks.4"] == 0).float().mean() < 0.01


def test_feature_space_neighbours_share_the_predicted_class_far_more_than_pixel_neighbours(demo):
    model, dataset, _ = demo
    features = feature_pass(model, dataset, progress=False)
    predicted = features.predictions
    pixels = np.stack([dataset[i][0].numpy().ravel() for i in range(len(dataset))])
    in_features = knn_agreement(features.features, predicted, k=5)
    in_pixels = knn_agreement(pixels, predicted, k=5)
    _, counts = np.unique(predicted, return_counts=True)
    chance = (counts * (counts - 1)).sum() / (len(predicted) * (len(predicted) - 1))
    print(f"5-NN sharing the predicted class: features {in_features:.3f}, "
          f"pixels {in_pixels:.3f}, chance {chance:.3f}")  # fmt: skip
    assert in_features >= 3 * in_pixels
    assert in_features >= 5 * chance
