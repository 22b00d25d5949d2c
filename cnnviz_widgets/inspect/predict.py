"""Class probabilities of one image, for the views that name the model's top predictions."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .inputs import model_image
from .view import inference_view


def class_probabilities(model: nn.Module, image, *, device=None, transform=None) -> np.ndarray:
    """Softmax over the model's (1, num_classes) output for one image, as float32 NumPy."""
    batch = model_image(model, image, transform=transform)  # checked, detached, model dtype
    with inference_view(model, device) as (view, dev):
        logits = view(batch.to(dev))
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"Expected the model to return class scores (1, num_classes); got {got}")
    return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()


def top_k(probabilities: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """The k most probable classes as (index, probability), most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), float(probabilities[i])) for i in order]
