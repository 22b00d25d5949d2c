"""The lecture's top patches on real photos: effective crops are small and alike per channel.

EfficientNet-Lite0 (ImageNet weights) ranks a third of the demo photos at three post-activation
layers whose geometric fields are 115 px, 211 px (the widgets' default layer) and 339 px on
224-px photos (the last one covers every photo whole). Each top unit's effective box (90% of
its input-gradient mass) is (a) much smaller than the photo, and (b) a channel's crops are
more alike in the model's penultimate feature space than random crops of the same sizes from
the same photos (`inspect.effective.crop_coherence`). Run with `-s` to see the figures.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import Subset

pytest.importorskip("cnnviz_widgets.demo.photos")
pytest.importorskip("timm", reason="the photo demo needs its extra: pip install -e '.[photos]'")

from cnnviz_widgets.demo import load_photos
from cnnviz_widgets.inspect.dataset import top_activations
from cnnviz_widgets.inspect.effective import crop_coherence
from cnnviz_widgets.inspect.layers import default_layer
from cnnviz_widgets.widgets._layers import layer_choices

DEFAULT = "blocks.4.1.bn1"  # `default_layer` of Lite0 at 224 (checked below)
LAYERS = ("blocks.3.1.bn2", DEFAULT, "blocks.4.2.bn2")
CHANNELS, K = 16, 4  # per layer: 64 units, 128 crops through the model for coherence
SIDE = 224


@pytest.fixture(scope="module")
def ranked():
    model, dataset, _ = load_photos()
    assert default_layer(model, layer_choices(model, dataset[0][0])) == DEFAULT
    subset = Subset(dataset, range(0, len(dataset), 3))  # 104 photos
    top = top_activations(model, subset, LAYERS, K, progress=False, batch_size=52)
    return model, subset, top


def _channels(values: np.ndarray, n: int) -> np.ndarray:
    """n channels evenly spaced among those whose top K values are not all one constant (a
    channel the input does not move has no gradient: its crops are the geometric field)."""
    live = np.flatnonzero(values[:, 0] > values[:, -1])
    return live[np.linspace(0, len(live) - 1, n).round().astype(int)]


@pytest.mark.parametrize("layer", LAYERS)
def test_effective_crops_are_small_and_alike_within_a_channel(ranked, layer):
    model, subset, top = ranked
    tp = top[layer]
    entries = [(int(c), r) for c in _channels(tp.values, CHANNELS) for r in range(K)]
    boxes = tp.effective_boxes(model, entries)
    side = float(np.median([max(b.size) for b in boxes])) / SIDE
    crops = [
        (subset[int(tp.indices[c, r])][0], b.box) for (c, r), b in zip(entries, boxes, strict=True)
    ]
    groups = [crops[i : i + K] for i in range(0, len(crops), K)]  # one per channel
    coherence = crop_coherence(model, groups, "bn2")
    channel, chance = coherence.channel.mean(), coherence.random.mean()
    print(
        f"\n{layer}: geometric field {tp.field.size[0]} px; median effective crop side "
        f"{side:.0%} of {SIDE} px; coherence {channel:.3f} vs random {chance:.3f} "
        f"(channels ahead: {int((coherence.channel > coherence.random).sum())}/{CHANNELS}; "
        f"zero-gradient units: {sum(b.fallback for b in boxes)})"
    )
    assert side <= 0.6, f"median effective crop side {side:.0%} of the photo"
    assert channel > chance, f"channel crops {channel:.3f} no more alike than random {chance:.3f}"
