"""The substitute labelled image folder and the unnormalised input view."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.models import ResNet18_Weights

from cnnviz_widgets.demo import input_view, substitute_image_folder
from cnnviz_widgets.demo.images import DIGIT_WORDS, class_folder, normalization


def digest(root):
    """Every file's relative path and content hash, sorted."""
    return sorted(
        (str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in root.rglob("*")
        if p.is_file()
    )


def square_ink(image: Image.Image) -> Image.Image:
    """The drawn digit as white ink on black, cut to a square around it (the demo's input)."""
    gray = np.asarray(image.convert("L"), np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = np.abs(gray - np.median(border))
    ink /= ink.max()
    ys, xs = np.nonzero(ink > 0.3)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 * 1.15
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return Image.fromarray((ink * 255).astype(np.uint8)).crop(box)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return substitute_image_folder(
        tmp_path_factory.mktemp("images") / "digits", size=64, per_class=6, classes=10, seed=1
    )


def test_imagefolder_layout(folder):
    dataset = ImageFolder(folder)
    assert dataset.classes == [f"{d}_{w}" for d, w in enumerate(DIGIT_WORDS)]
    assert [class_folder(d) for d in range(10)] == dataset.classes
    assert len(dataset) == 60
    assert np.bincount(dataset.targets).tolist() == [6] * 10
    for path, label in dataset.samples:
        image = Image.open(path)
        assert image.size == (64, 64)
        assert image.mode == "RGB"
        assert path.endswith(".png")
        assert int(dataset.classes[label][0]) == label


def test_default_arguments(tmp_path):
    root = substitute_image_folder(tmp_path / "default")
    dataset = ImageFolder(root)
    assert root == tmp_path / "default"
    assert len(dataset.classes) == 5
    assert len(dataset) == 5 * 8
    assert dataset[0][0].size == (224, 224)


def test_labels_are_the_digits_drawn(folder, demo):
    """The shipped digits CNN reads each picture's digit back as its folder's label."""
    model, digits, _ = demo
    dataset = ImageFolder(folder)
    batch = torch.stack([digits.transform(square_ink(image)) for image, _ in dataset])
    with torch.no_grad():
        predicted = model(batch).argmax(1).numpy()
    agreement = float((predicted == np.asarray(dataset.targets)).mean())
    assert agreement >= 0.9, f"only {agreement:.0%} of the pictures read as their label"


def test_images_differ_in_colour_and_placement(folder):
    dataset = ImageFolder(folder)
    arrays = [np.asarray(image, np.float32) for image, _ in dataset]
    backgrounds = np.array([a[0, 0] for a in arrays])
    assert len(np.unique(backgrounds.round(-1), axis=0)) > 10
    assert all(a.std() > 20 for a in arrays), "some picture has no visible digit"
    # colour: the three channels differ somewhere
    assert any(np.abs(a[..., 0] - a[..., 1]).mean() > 10 for a in arrays)


def test_deterministic_with_a_seed(tmp_path):
    kwargs = {"size": 32, "per_class": 3, "classes": 4}
    a = digest(substitute_image_folder(tmp_path / "a", seed=7, **kwargs))
    b = digest(substitute_image_folder(tmp_path / "b", seed=7, **kwargs))
    c = digest(substitute_image_folder(tmp_path / "c", seed=8, **kwargs))
    assert len(a) == 12
    assert a == b
    assert [h for _, h in a] != [h for _, h in c]


def test_grayscale_mode(tmp_path):
    root = substitute_image_folder(tmp_path / "gray", size=40, per_class=2, classes=3, mode="L")
    paths = sorted(root.rglob("*.png"))
    assert len(paths) == 6
    assert {Image.open(p).mode for p in paths} == {"L"}
    dataset = ImageFolder(root, transform=T.Compose([T.Grayscale(), T.ToTensor()]))
    image, label = dataset[5]
    assert image.shape == (1, 40, 40)
    assert label == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "CMYK"}, "Unknown mode"),
        ({"classes": 11}, "classes must be"),
        ({"classes": 0}, "classes must be"),
        ({"per_class": 0}, "per_class must be"),
        ({"per_class": 1000}, "per_class must be"),
        ({"size": 4}, "size must be"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        substitute_image_folder(tmp_path / "bad", **kwargs)


def test_normalization_found_in_each_kind_of_transform():
    preset = ResNet18_Weights.DEFAULT.transforms()
    mean, std = normalization(preset)
    assert torch.allclose(mean, torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(std, torch.tensor([0.229, 0.224, 0.225]))
    composed = T.Compose([T.Resize(8), T.ToTensor(), T.Normalize([0.5], [0.25])])
    mean, std = normalization(composed)
    assert mean.tolist() == [0.5]
    assert std.tolist() == [0.25]
    assert normalization(T.Compose([T.ToTensor()])) is None
    assert normalization(None) is None


def test_input_view_undoes_normalize(folder):
    plain = ImageFolder(folder, transform=T.ToTensor())
    normalised = ImageFolder(
        folder, transform=T.Compose([T.ToTensor(), T.Normalize([0.2, 0.4, 0.6], [0.3, 0.2, 0.1])])
    )
    view = input_view(normalised)(7)
    assert view.dtype == np.uint8
    assert view.shape == (64, 64, 3)
    expected = (plain[7][0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(view.astype(int) - expected.astype(int)).max() <= 1


def test_input_view_of_grayscale_follows_the_transform(folder):
    transform = T.Compose([T.Grayscale(), T.Resize(32), T.ToTensor(), T.Normalize([0.5], [0.5])])
    dataset = ImageFolder(folder, transform=transform)
    view = input_view(dataset)(0)
    assert view.shape == (32, 32)
    expected = np.asarray(dataset.loader(dataset.samples[0][0]).convert("L").resize((32, 32)))
    # Resize antialiases slightly differently from PIL's; the pictures agree closely.
    assert np.abs(view.astype(int) - expected.astype(int)).mean() < 4
