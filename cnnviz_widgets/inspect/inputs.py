"""Turn what a user hands us (PIL image, array, CHW/NCHW tensor) into a model-ready batch.

Every input becomes a faithful float tensor or a ValueError that names the value and the fix.
A PIL image without `transform=` is read by its mode into [0, 1]:

- 8-bit modes ("L", "P", "RGB", ...): value / 255; "1" gives 0 and 1; "CMYK", "YCbCr", "HSV" and
  "LAB" go through PIL's conversion to RGB;
- alpha ("RGBA", "LA", "PA") is dropped, as torchvision's image loader (`convert("RGB")`) drops
  it; composite the image over a background first if transparent pixels should show as one;
- 16-bit ("I;16", "I;16B", ...): value / 65535;
- "I" (32-bit integers, what PIL makes of many 16-bit files): value / 65535 when every value
  lies in 0..65535, otherwise a ValueError (there is no range to scale by);
- "F" (32-bit float): the values as they are, unscaled, as a float tensor would be taken.

A grayscale image given to a 3-channel model is repeated to R = G = B (nothing is lost); a colour
image given to a 1-channel model is PIL's luma, L = 0.299 R + 0.587 G + 0.114 B. A 4-channel
model gets RGBA. Tensors and arrays are taken as already in the model's input space: they must
be floating point with the model's channel count; they are detached from any autograd graph and
cast to the model's parameter dtype, and NaN or inf values are refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

ACCEPTED = "a PIL image, or a float tensor/array of shape (C, H, W) or (N, C, H, W)"


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def param_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (else float32)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def input_channels(model: nn.Module) -> int | None:
    """In-channels of the model's first Conv2d, or None when it has none."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def check_positive(name: str, value, upper: int | None = None) -> int:
    """`value` as an int in 1..upper (or 1 or more), else a ValueError naming it and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    if not 1 <= value <= (upper or value):
        raise ValueError(f"{name} {value} is out of range 1{f'..{upper}' if upper else ' or more'}")
    return int(value)


def as_index(name: str, value) -> int:
    """An int given as a Python, NumPy or one-element torch integer (`np.argmax(p)`,
    `logits.argmax()`), else a ValueError naming it."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int; got {value!r}")
    return int(value)


def _high_bit(image: Image.Image) -> np.ndarray:
    """A single-band "I;16*", "I" or "F" image as float32 (H, W), by its mode's range."""
    array = np.asarray(image)
    if image.mode == "F":
        return array.astype(np.float32)
    if array.dtype.kind == "u":  # I;16, I;16B, I;16L, I;16N: 16-bit unsigned
        return array.astype(np.float32) / 65535.0
    lo, hi = int(array.min()), int(array.max())
    if lo < 0 or hi > 65535:
        raise ValueError(
            f"A PIL image of mode 'I' (32-bit integers) with values {lo}..{hi} has no range to "
            "scale to [0, 1] (values within 0..65535 are read as 16-bit); scale it yourself "
            "and pass a float tensor (C, H, W), or pass transform=..."
        )
    return array.astype(np.float32) / 65535.0


def pil_to_float(image: Image.Image, channels: int | None = None) -> torch.Tensor:
    """A PIL image as a float32 (C, H, W) tensor in [0, 1] by its mode (see the module doc).

    `channels` (1, 3, 4 or None for 3) is the channel count wanted.
    """
    if channels not in (None, 1, 3, 4):
        raise ValueError(
            f"The model expects {channels} input channels, but a PIL image gives 1 (gray), "
            f"3 (RGB) or 4 (RGBA); pass a float tensor (C, H, W) with {channels} channels"
        )
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        gray = torch.from_numpy(_high_bit(image))[None]
        if channels == 1:
            return gray
        bands = [gray] * 3 + ([torch.ones_like(gray)] if channels == 4 else [])
        return torch.cat(bands)
    want = {1: "L", 4: "RGBA"}.get(channels, "RGB")
    try:
        converted = image.convert(want)
    except ValueError:
        try:  # modes PIL converts only to RGB (e.g. "LAB" to "L")
            converted = image.convert("RGB").convert(want)
        except ValueError as err:
            raise ValueError(
                f"Cannot read a PIL image of mode {image.mode!r} as {want!r} ({err}); convert "
                "it yourself (image.convert(...)) or pass a float tensor (C, H, W)"
            ) from err
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(converted).float().div(255.0)


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    if array.dtype.byteorder not in "=|":  # big-endian data (e.g. from a FITS or TIFF reader)
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(np.ascontiguousarray(array))
    except TypeError as err:
        raise ValueError(
            f"Expected {ACCEPTED}; got a NumPy array of dtype {array.dtype} with shape "
            f"{array.shape}"
        ) from err


def _repeat(ndim: int, times: int) -> str:
    return f"x.repeat({', '.join(['1'] * (ndim - 3) + [str(times), '1', '1'])})"


def _channel_error(shape: tuple, got: int, want: int, from_transform: bool) -> ValueError:
    """The error for an image with `got` channels given to a model that takes `want`."""
    what = "transform= gave" if from_transform else "got"
    message = (
        f"The model expects {want} input channel(s) in (N, C, H, W); {what} a tensor of shape "
        f"{shape} with {got} channel(s)."
    )
    if len(shape) in (3, 4) and shape[-1] == want and got != want:
        fix = (
            f" It looks like channels-last (..., H, W, C); move the channels first: "
            f"x.permute({'0, 3, 1, 2' if len(shape) == 4 else '2, 0, 1'}) "
            f"(NumPy: x.transpose({'0, 3, 1, 2' if len(shape) == 4 else '2, 0, 1'}))"
        )
    elif from_transform:
        fix = (
            f" Make the transform give {want} channel(s), e.g. with "
            f"transforms.Grayscale(num_output_channels={want}) first"
            if want in (1, 3)
            else f" Make the transform give {want} channel(s)"
        )
    elif got == 1 and want == 3:
        fix = (
            f" For a grayscale image, repeat its channel: {_repeat(len(shape), 3)} (normalised "
            "with the model's per-channel mean and std), or pass the PIL image (it is read "
            "as RGB)"
        )
    elif got == 3 and want == 1:
        fix = (
            " For a colour image, make it grayscale before normalising "
            "(torchvision.transforms.functional.rgb_to_grayscale), or pass the PIL image (it "
            "is read as grayscale)"
        )
    else:
        fix = f" Give the image {want} channel(s)"
    return ValueError(message + fix)


def _dtype_error(shape: tuple, dtype, from_numpy: bool) -> ValueError:
    fix = (
        "Convert it (e.g. x.float() / 255, then normalise as the model expects), or pass a "
        "PIL image with transform=..."
    )
    if from_numpy and dtype == torch.uint8 and len(shape) in (2, 3):
        fix += " (PIL.Image.fromarray(x) makes one of an (H, W) or (H, W, 3) uint8 array)"
    return ValueError(
        f"Expected a floating-point image tensor in the model's input space; got dtype {dtype} "
        f"with shape {shape}. {fix}"
    )


def check_finite(batch: torch.Tensor, first_index: int | None = None) -> None:
    """Raise a ValueError naming how many values of `batch` (N, C, H, W) are NaN or inf and
    where the first one is (in dataset[first_index + n] when the batch comes from a dataset)."""
    if bool(torch.isfinite(batch).all()):
        return
    bad = ~torch.isfinite(batch)
    n, c, y, x = (int(i) for i in bad.nonzero()[0])
    if first_index is not None:
        of = f" of dataset[{first_index + n}]"
    else:
        of = f" of image {n} in the batch" if batch.shape[0] > 1 else ""
    raise ValueError(
        f"{'The image' if len(batch) == 1 else f'A batch of {len(batch)} images'} has "
        f"{int(bad.sum())} non-finite value(s) (NaN or inf) among its "
        f"{batch.numel()}; the first is {batch[n, c, y, x].item()} at channel {c}, row {y}, "
        f"column {x}{of}. Replace them (e.g. torch.nan_to_num(x)) or fix where they come from"
    )


def to_batch(
    image,
    *,
    channels: int | None = None,
    transform: Callable | None = None,
    dtype: torch.dtype | None = None,
    first_index: int | None = None,
) -> torch.Tensor:
    """Return `image` as a finite float NCHW tensor, detached; cast to `dtype` when given.

    A PIL image goes through `transform` when given, else `pil_to_float`. Raises ValueError
    naming the shape, dtype, channels or non-finite values it got and what to do (for a
    batch of dataset items from `first_index` on, naming the item).
    """
    from_transform = from_numpy = False
    if isinstance(image, Image.Image):
        if transform is None:
            image = pil_to_float(image, channels)
        else:
            image, from_transform = transform(image), True
            if not isinstance(image, (torch.Tensor, np.ndarray)):
                raise ValueError(
                    f"transform= returned a {type(image).__name__}; it must return the image "
                    "as a tensor (C, H, W), e.g. end it with transforms.ToTensor()"
                )
    if isinstance(image, np.ndarray):
        image, from_numpy = _from_numpy(image), True
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"Expected {ACCEPTED}; got {type(image).__name__}")
    image = image.detach()
    shape = tuple(image.shape)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or min(image.shape) == 0:
        hint = (
            "; for a one-channel (H, W) image add the channel axis: x[None]"
            if len(shape) == 2
            else ""
        )
        raise ValueError(f"Expected {ACCEPTED}; got a tensor of shape {shape}{hint}")
    if not image.is_floating_point():
        raise _dtype_error(shape, image.dtype, from_numpy)
    if channels is not None and image.shape[1] != channels:
        raise _channel_error(shape, image.shape[1], channels, from_transform)
    if dtype is not None and image.dtype != dtype:
        image = image.to(dtype)
    check_finite(image, first_index)
    return image


def one_image(
    image,
    *,
    channels: int | None = None,
    transform: Callable | None = None,
    dtype: torch.dtype | None = None,
):
    """`to_batch` for views of a single image: a (1, C, H, W) tensor, or a ValueError."""
    batch = to_batch(image, channels=channels, transform=transform, dtype=dtype)
    if batch.shape[0] != 1:
        raise ValueError(
            f"Expected one image, (C, H, W) or (1, C, H, W); got a batch of shape "
            f"{tuple(batch.shape)}"
        )
    return batch


def model_batch(
    model: nn.Module, image, transform: Callable | None = None, first_index: int | None = None
) -> torch.Tensor:
    """`image` as `model` takes it: `to_batch` with the model's input channels and dtype."""
    return to_batch(
        image,
        channels=input_channels(model),
        transform=transform,
        dtype=param_dtype(model),
        first_index=first_index,
    )


def model_image(model: nn.Module, image, transform: Callable | None = None) -> torch.Tensor:
    """One image as `model` takes it: (1, C, H, W) with the model's input channels (of its
    first Conv2d), finite, detached, in the model's parameter dtype; or a ValueError."""
    return one_image(
        image, channels=input_channels(model), transform=transform, dtype=param_dtype(model)
    )
