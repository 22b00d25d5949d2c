"""A small labelled image folder made on the fly, for notebooks that must run offline.

>>> root = substitute_image_folder(tmp / "digits", size=224, per_class=8, classes=5)
>>> dataset = torchvision.datasets.ImageFolder(root, transform=weights.transforms())
>>> view = input_view(dataset)  # index -> uint8 image of what the model sees

The images are scikit-learn's 8x8 handwritten digits (they ship with scikit-learn, so nothing is
downloaded), scaled up to `size`, placed at a random position and size, and drawn in a random
ink colour on a random background with a little noise. Folder `k_<word>` holds the digit k, so
ImageFolder's alphabetical class order gives label k to the digit k.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["DIGIT_WORDS", "class_folder", "input_view", "normalization", "substitute_image_folder"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MODES = ("RGB", "L")
NOISE = 0.04  # standard deviation of the pixel noise, on the 0..1 scale


def class_folder(digit: int) -> str:
    """The folder name of a digit's class: `3_three`; sorts in digit order."""
    return f"{digit}_{DIGIT_WORDS[digit]}"


def _digit_pixels(digit_image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The 8x8 digit (0..16) scaled up and placed on a `size` x `size` canvas: ink in 0..1."""
    side = round(size * rng.uniform(0.55, 0.9))
    side = max(1, min(side, size))
    glyph = Image.fromarray((digit_image * (255.0 / 16.0)).astype(np.uint8), mode="L")
    glyph = glyph.resize((side, side), Image.Resampling.BICUBIC)
    y, x = rng.integers(0, size - side + 1, size=2)
    canvas = np.zeros((size, size), np.float32)
    canvas[y : y + side, x : x + side] = np.asarray(glyph, np.float32) / 255.0
    return canvas


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (background, ink) pair of RGB colours in 0..1, one dark and one light."""
    dark = rng.uniform(0.0, 0.35, 3)
    light = rng.uniform(0.6, 1.0, 3)
    return (dark, light) if rng.random() < 0.5 else (light, dark)


def substitute_image_folder(
    root: str | PathLike,
    *,
    size: int = 224,
    per_class: int = 8,
    classes: int = 5,
    mode: str = "RGB",
    seed: int = 0,
) -> Path:
    """Write `per_class` PNGs of each digit 0..`classes`-1 under `root` in ImageFolder layout.

    `root/<k>_<word>/<k>_<nn>.png`, `size` x `size` pixels, `mode` "RGB" (coloured) or "L"
    (grayscale). The digits drawn, their placement and colours follow `seed` alone, so the same
    arguments write the same files. Returns `root` as a Path (created when missing; files of
    the same names are overwritten).
    """
    from sklearn.datasets import load_digits

    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if not 1 <= classes <= len(DIGIT_WORDS):
        raise ValueError(f"classes must be 1..{len(DIGIT_WORDS)}; got {classes}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels; got {size}")
    digits = load_digits()
    counts = np.bincount(digits.target, minlength=classes)[:classes]
    if not 1 <= per_class <= counts.min():
        raise ValueError(f"per_class must be 1..{counts.min()}; got {per_class}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    for digit in range(classes):
        folder = root / class_folder(digit)
        folder.mkdir(parents=True, exist_ok=True)
        chosen = rng.choice(np.flatnonzero(digits.target == digit), per_class, replace=False)
        for n, index in enumerate(chosen):
            ink = _digit_pixels(digits.images[index], size, rng)[..., None]
            background, colour = _colours(rng)
            pixels = background * (1.0 - ink) + colour * ink
            pixels = pixels + rng.normal(0.0, NOISE, pixels.shape)
            array = (np.clip(pixels, 0.0, 1.0) * 255.0).round().astype(np.uint8)
            image = Image.fromarray(array, mode="RGB")
            image.convert(mode).save(folder / f"{digit}_{n:02d}.png")
    return root


def normalization(transform: Callable | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (mean, std) of the Normalize step in `transform`, or None when it has none.

    Understands torchvision's `Normalize`, a `Compose` holding one, and the weights'
    `transforms()` presets (which carry `mean` and `std`).
    """
    if transform is None:
        return None
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    if mean is not None and std is not None:
        return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    for step in getattr(transform, "transforms", ()):
        found = normalization(step)
        if found is not None:
            return found
    return None


def input_view(dataset) -> Callable[[int], np.ndarray]:
    """index -> uint8 image (HxW or HxWx3) of `dataset[index]` as the model sees it, unnormalised.

    The dataset's `transform` (resize, crop, ...) is applied as for the model and its Normalize
    step undone, so patches cut at a unit's receptive field line up with the image. Give it as
    `display=` to TopPatches and EmbeddingExplorer.
    """
    stats = normalization(getattr(dataset, "transform", None))

    def view(index: int) -> np.ndarray:
        image = dataset[index][0].detach().float().cpu()
        if stats is not None:
            mean, std = stats
            image = image * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
        array = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)

    return view
