"""Embedded offline demos.

>>> model, dataset, classes = load_demo(split="test")  # a small CNN on handwritten digits
>>> model, dataset, classes = load_photos()  # EfficientNet-Lite0 (ImageNet) on real photos
>>> model, dataset, classes = load_gabor_cnn()  # 7x7 colour filters, trained on gratings
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnviz_widgets.demo.data import CLASSES, DigitsDataset, check_split
from cnnviz_widgets.demo.gabor import (
    GABOR_CLASSES,
    GaborCNN,
    GaborDataset,
    load_gabor_cnn,
    orientation_selectivity,
)
from cnnviz_widgets.demo.images import input_view, substitute_image_folder
from cnnviz_widgets.demo.model import DigitsCNN
from cnnviz_widgets.demo.photos import UNLABELLED, PhotoDataset, load_lite0, load_photos

__all__ = [
    "GABOR_CLASSES",
    "UNLABELLED",
    "WEIGHTS_PATH",
    "DigitsCNN",
    "DigitsDataset",
    "GaborCNN",
    "GaborDataset",
    "PhotoDataset",
    "input_view",
    "load_demo",
    "load_gabor_cnn",
    "load_lite0",
    "load_photos",
    "orientation_selectivity",
    "substitute_image_folder",
]

WEIGHTS_PATH = Path(__file__).with_name("digits_cnn.pt")


def load_demo(
    split: str = "test", device: str | torch.device | None = None
) -> tuple[DigitsCNN, DigitsDataset, list[str]]:
    """Return ``(model, dataset, classes)``: the pretrained CNN in eval mode and a digits split."""
    check_split(split)
    model = DigitsCNN()
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    if device is not None:
        model.to(device)
    return model, DigitsDataset(split), list(CLASSES)
