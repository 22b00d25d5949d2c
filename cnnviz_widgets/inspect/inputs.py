"""Turn what a user hands us (PIL image, array, CHW/NCHW tensor) into a model-ready batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ACCEPTED = "a PIL image, or a float tensor/array of shape (C, H, W) or (N, C, H, W)"


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def input_channels(model: nn.Module) -> int | None:
    """In-channels of the model's first Conv2d, or None when it has none."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def _pil_to_tensor(image, channels: int | None) -> torch.Tensor:
    from torchvision.transforms.functional import pil_to_tensor

    mode = "L" if channels == 1 else "RGB"
    return pil_to_tensor(image.convert(mode)).float().div(255.0)


def to_batch(
    image,
    *,
    channels: int | None = None,
    transform: Callable | None = None,
) -> torch.Tensor:
    """Return `image` as a float NCHW tensor; `transform` is applied to PIL images first.

    Raises ValueError naming the shape it got and the shapes it accepts.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        image = transform(image) if transform is not None else _pil_to_tensor(image, channels)
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"Expected {ACCEPTED}; got {type(image).__name__}")
    shape = tuple(image.shape)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or min(image.shape) == 0:
        raise ValueError(f"Expected {ACCEPTED}; got a tensor of shape {shape}")
    if not image.is_floating_point():
        raise ValueError(
            f"Expected a floating-point image tensor in the model's input space; got dtype "
            f"{image.dtype} with shape {shape}. Convert it (e.g. x.float() / 255, then normalise "
            "as the model expects), or pass a PIL image with transform=..."
        )
    if channels is not None and image.shape[1] != channels:
        raise ValueError(
            f"The model expects {channels} input channel(s) in (N, C, H, W); got a tensor of "
            f"shape {shape} with {image.shape[1]} channel(s)"
        )
    return image


def one_image(image, *, channels: int | None = None, transform: Callable | None = None):
    """`to_batch` for views of a single image: a (1, C, H, W) tensor, or a ValueError."""
    batch = to_batch(image, channels=channels, transform=transform)
    if batch.shape[0] != 1:
        raise ValueError(
            f"Expected one image, (C, H, W) or (1, C, H, W); got a batch of shape "
            f"{tuple(batch.shape)}"
        )
    return batch
