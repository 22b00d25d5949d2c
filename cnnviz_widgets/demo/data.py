"""Offline demo dataset: scikit-learn's 8x8 handwritten digits, shown to the model at 32x32."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

SPLITS = ("train", "test", "all")
CLASSES = [str(d) for d in range(10)]
SIZE = 32
TEST_SIZE = 0.2
SPLIT_SEED = 0

# Pixel mean/std of the training split after scaling to [0, 1] and upsampling to 32x32.
# Frozen as literals so the shipped weights never depend on a recomputation.
MEAN = 0.3054
STD = 0.3237


def check_split(split: str) -> str:
    """Return ``split`` unchanged, or raise ValueError listing the valid choices."""
    if split not in SPLITS:
        choices = ", ".join(repr(s) for s in SPLITS)
        raise ValueError(f"Unknown split {split!r}; choose one of: {choices}")
    return split


@lru_cache(maxsize=1)
def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    """Load the 1,797 sklearn digit images (float64, 0..16) and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def split_indices(split: str, targets: np.ndarray) -> np.ndarray:
    """Original sklearn indices of ``split`` (fixed stratified 80/20; "all" keeps sklearn order)."""
    check_split(split)
    all_idx = np.arange(len(targets))
    if split == "all":
        return all_idx
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        all_idx, test_size=TEST_SIZE, stratify=targets, random_state=SPLIT_SEED
    )
    return np.asarray(train if split == "train" else test, dtype=np.int64)


def resize_unit(images: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize (N, 1, H, W) images in [0, 1] to SIZE x SIZE."""
    if images.shape[-2:] == (SIZE, SIZE):
        return images
    # antialias only matters when shrinking a user's large picture; upsampling is unchanged.
    out = F.interpolate(
        images, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True
    )
    return out.clamp_(0.0, 1.0)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] images to the model's input scale."""
    return (images - MEAN) / STD


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Invert :func:`normalize`, clamped to [0, 1]."""
    return (images * STD + MEAN).clamp(0.0, 1.0)


def to_uint8(unit: torch.Tensor) -> np.ndarray:
    """Convert a [0, 1] tensor to a uint8 numpy array."""
    return (unit * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def _as_unit_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Turn a PIL image or a 2-D array into a float32 HxW array in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("L"))
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


class DigitsDataset(Dataset):
    """Map-style dataset of sklearn's handwritten digits, upsampled to 1x32x32 and normalised.

    ``dataset[i]`` is ``(image float32 (1, 32, 32), label int)``; ``indices`` are sklearn indices.
    """

    def __init__(self, split: str = "test") -> None:
        images, targets = _load_raw()
        self.split = check_split(split)
        self.indices = split_indices(split, targets)
        self.targets = targets[self.indices].copy()
        self.classes = list(CLASSES)
        self.mean = MEAN
        self.std = STD
        raw = torch.from_numpy(images[self.indices]).float().div_(16.0).unsqueeze(1)
        # Keep the un-normalised 32x32 view too: it is what image()/pil() display.
        self._unit = resize_unit(raw).contiguous()
        self._inputs = normalize(self._unit).contiguous()
        self._labels = [int(t) for t in self.targets]

    def __len__(self) -> int:
        return len(self._labels)

    def _check_index(self, i: int) -> int:
        """Resolve a list-style (possibly negative) index or raise IndexError."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {self.split!r} split of size {n}")
        return i % n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = self._check_index(int(i))
        return self._inputs[i], self._labels[i]

    def image(self, i: int) -> np.ndarray:
        """Displayable uint8 (32, 32) image of sample ``i`` (high value = ink)."""
        return to_uint8(self._unit[self._check_index(int(i)), 0])

    def pil(self, i: int) -> Image.Image:
        """Sample ``i`` as a mode "L" PIL image."""
        return Image.fromarray(self.image(i), mode="L")

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Undo the input normalisation: model input -> image in [0, 1]."""
        return denormalize(tensor)

    def transform(self, image: Image.Image | np.ndarray, invert: bool = False) -> torch.Tensor:
        """Turn a grayscale PIL image / HxW array of any size into a normalised (1, 32, 32) input.

        Digits are white ink on black; pass ``invert=True`` for dark ink on a light background.
        """
        unit = torch.from_numpy(_as_unit_array(image))
        if invert:
            unit = 1.0 - unit
        return normalize(resize_unit(unit[None, None]))[0]

    def __repr__(self) -> str:
        return f"DigitsDataset(split={self.split!r}, n={len(self)})"
