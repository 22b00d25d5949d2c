"""The Gabor CNN: shipped 7x7 colour filters that are oriented and colour-opponent.

Orientation selectivity (`orientation_selectivity`, defined in cnnviz_widgets/demo/gabor.py):
the resultant length of the doubled frequency angles of a filter's power spectrum, DC removed;
it is checked here on filters whose answer is known (a Gabor, a blob, noise) before it is used
to compare the shipped filters with the random start of the same training.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnviz_widgets.demo import GABOR_CLASSES, load_gabor_cnn, orientation_selectivity
from cnnviz_widgets.demo.gabor import GABOR_WEIGHTS_PATH, make_images, normalize
from cnnviz_widgets.demo.train_gabor import build_model, train


@pytest.fixture(scope="module")
def shipped():
    return load_gabor_cnn()


def _gabor(theta: float, k: int = 7) -> np.ndarray:
    yy, xx = np.mgrid[:k, :k] - k // 2
    u = np.cos(theta) * xx + np.sin(theta) * yy
    return np.cos(2 * np.pi * u / 4) * np.exp(-(xx**2 + yy**2) / 8)


def _opponency(weight: torch.Tensor) -> np.ndarray:
    """Per filter, the most negative correlation between two of its colour channels."""
    w = weight - weight.mean((-2, -1), keepdim=True)
    f = w.flatten(2)
    f = f / f.norm(dim=2, keepdim=True).clamp_min(1e-12)
    return torch.einsum("nik,njk->nij", f, f).amin((1, 2)).numpy()


def test_the_selectivity_index_on_filters_whose_answer_is_known():
    rng = np.random.default_rng(0)
    gabors = np.stack([np.stack([g, -g, 0 * g]) for g in map(_gabor, np.linspace(0, 3, 7))])
    assert (orientation_selectivity(gabors) > 0.8).all()  # any orientation, colour-opponent
    yy, xx = np.mgrid[:7, :7] - 3
    r2 = xx**2 + yy**2
    blob = np.exp(-r2 / 2) - 0.5 * np.exp(-r2 / 8)  # centre-surround: no orientation
    assert orientation_selectivity(np.stack([blob] * 3)[None])[0] < 0.05
    noise = orientation_selectivity(rng.normal(size=(200, 3, 7, 7)))
    assert np.median(noise) < 0.2


def test_shipped_filters_are_oriented_where_the_random_start_is_not(shipped):
    model, _, _ = shipped
    assert model.conv1.weight.shape == (32, 3, 7, 7)
    trained = orientation_selectivity(model.conv1.weight.detach())
    assert (trained > 0.3).mean() >= 0.65, np.round(np.sort(trained), 2)
    for seed in range(3):  # the start train_gabor uses, and PyTorch's default init
        torch.manual_seed(seed)
        for start in (build_model(), type(model)()):
            random = orientation_selectivity(start.conv1.weight.detach())
            assert (random > 0.3).mean() <= 0.1
            assert np.median(trained) > 3 * np.median(random)


def test_shipped_filters_are_colour_opponent(shipped):
    model, _, _ = shipped
    trained = _opponency(model.conv1.weight.detach())
    torch.manual_seed(0)
    random = _opponency(build_model().conv1.weight.detach())
    assert (trained < -0.5).mean() >= 0.5  # two channels with opposite signs: red vs green...
    assert (random < -0.5).mean() <= 0.1


@torch.inference_mode()
def test_shipped_model_tells_the_procedural_classes_apart(shipped):
    model, dataset, classes = shipped
    assert classes == GABOR_CLASSES and len(classes) == 12
    assert GABOR_WEIGHTS_PATH.stat().st_size < 1_000_000
    assert not model.training
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    accuracy = (model(x).argmax(1).numpy() == dataset.targets).mean()
    assert accuracy >= 0.8  # chance: 1/12
    assert dataset.image(0).shape == (64, 64, 3)


def test_images_follow_the_seed_and_cover_every_class():
    a, la = make_images(96, seed=3)
    b, lb = make_images(96, seed=3)
    c, _ = make_images(96, seed=4)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert a.shape == (96, 3, 64, 64) and a.min() >= 0 and a.max() <= 1
    _, labels = make_images(1200, seed=0)
    counts = np.bincount(labels.numpy(), minlength=12)
    assert counts.min() > 60  # ~100 each
    assert normalize(torch.full((1,), 0.5)).item() == 0.0


def test_training_is_reproducible():
    first = train(steps=3, log_every=0).state_dict()
    again = train(steps=3, log_every=0).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
