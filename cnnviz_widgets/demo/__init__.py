"""Embedded offline demo: a small CNN trained on scikit-learn's handwritten digits.

>>> model, dataset, classes = load_demo(split="test")
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnviz_widgets.demo.data import CLASSES, DigitsDataset, check_split
from cnnviz_widgets.demo.images import input_view, substitute_image_folder
from cnnviz_widgets.demo.model import DigitsCNN

__all__ = [
    "WEIGHTS_PATH",
    "DigitsCNN",
    "DigitsDataset",
    "input_view",
    "load_demo",
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
