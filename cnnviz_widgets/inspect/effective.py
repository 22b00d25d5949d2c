"""Effective fields: the part of a unit's geometric field that it used on one image.

For a unit (channel c at map position (y, x) of a layer) and one image, the gradient of the
unit with respect to the input image, its magnitude summed over the input channels, says how
much each pixel moves the unit on that image (exact for that image: autograd, no sampling).
The effective box is the box that `peel_box` finds holding `SHARE` of that mass inside the
unit's geometric field (clipped to the image); the geometric field is what the unit *can* see.

>>> boxes = effective_boxes(model, "layer3", images, [(c, y, x), ...])  # one per image

The forwards run on an eval-mode view of the model (`ActivationCapture(grad=True)`), which
shares its weights: the user's model keeps its mode, hooks, device, weights and `.grad`.
When the layer's output is that of a saturating activation inside it (ReLU, ReLU6: timm's
`BatchNormAct2d`), the gradient is taken at that activation's input: the same where the unit
is active below its ceiling, and defined where a ReLU6 holds it at 6 (there the output's own
gradient is zero). A unit whose gradient is zero in its whole field keeps the geometric box,
marked `fallback`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .capture import ActivationCapture, LayerRef, capture, resolve_layer

#: the share of a unit's gradient mass (within its geometric field) its effective box holds
SHARE = 0.9
#: units per forward and backward: bounds the memory of the autograd graph
CHUNK = 16
#: activations whose input, not output, is differentiated when they end the layer
SATURATING = (nn.ReLU, nn.Hardtanh)  # nn.ReLU6 is a Hardtanh

Box = tuple[int, int, int, int]


class NotDifferentiable(ValueError):
    """The layer's units cannot be differentiated with respect to the input (the forward
    changes in place a tensor autograd needs, or runs without autograd)."""


@dataclass(frozen=True)
class EffectiveBox:
    """A unit's effective `box` (y0, y1, x0, x1), half-open, inside `field` (its geometric box
    clipped to the image); `held`: the share of the field's gradient mass inside `box`;
    `fallback`: the gradient is zero in the whole field, so `box` is `field`."""

    box: Box
    field: Box
    held: float
    fallback: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the box."""
        return self.box[1] - self.box[0], self.box[3] - self.box[2]


def check_share(share) -> float:
    """`share` as a float in (0, 1], else a ValueError naming it."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError(f"share must be a number in (0, 1], e.g. {SHARE}; got {share!r}")
    return float(share)


def peel_box(mass: np.ndarray, box: Box, share: float = SHARE) -> tuple[Box, float]:
    """Shrink `box` over a non-negative (H, W) `mass`; returns (box, share of its mass held).

    Greedy and deterministic: start from `box`; while the box is more than one pixel on a
    side, take its edge row or column with the least mass (ties: top, bottom, left, right) and
    peel it off if what stays holds >= `share` of the start box's mass; else stop. Guarantees:
    the result lies in `box`, holds >= `share` of its mass, and no single edge row or column
    of it can be removed keeping that (a local minimum, not always the smallest such box).
    O(H + W) steps on one integral image.
    """
    y0, y1, x0, x1 = (int(v) for v in box)
    s = np.zeros((mass.shape[0] + 1, mass.shape[1] + 1))
    s[1:, 1:] = np.asarray(mass, dtype=np.float64).cumsum(0).cumsum(1)
    s = s.tolist()  # Python floats: fast scalar reads

    def inside(a: int, b: int, c: int, d: int) -> float:
        return s[b][d] - s[a][d] - s[b][c] + s[a][c]

    start = inside(y0, y1, x0, x1)
    need = share * start
    while y1 - y0 > 1 or x1 - x0 > 1:
        edges = []
        if y1 - y0 > 1:
            edges += [(inside(y0, y0 + 1, x0, x1), 0), (inside(y1 - 1, y1, x0, x1), 1)]
        if x1 - x0 > 1:
            edges += [(inside(y0, y1, x0, x0 + 1), 2), (inside(y0, y1, x1 - 1, x1), 3)]
        side = min(edges)[1]
        peeled = (y0 + (side == 0), y1 - (side == 1), x0 + (side == 2), x1 - (side == 3))
        if inside(*peeled) < need:
            break
        y0, y1, x0, x1 = peeled
    held = inside(y0, y1, x0, x1) / start if start > 0 else 1.0
    return (y0, y1, x0, x1), held


def effective_box(magnitude, field: Box, share: float = SHARE) -> EffectiveBox:
    """The `EffectiveBox` of one unit from its (H, W) gradient magnitude and `field` (its
    geometric box clipped to the image); see `peel_box`."""
    mass = np.asarray(magnitude, dtype=np.float64)
    field = tuple(int(v) for v in field)
    y0, y1, x0, x1 = field
    if not np.any(mass[y0:y1, x0:x1] > 0):  # a dead path: nothing to measure
        return EffectiveBox(field, field, 0.0, fallback=True)
    box, held = peel_box(mass, field, check_share(share))
    return EffectiveBox(box, field, held)


def _pre_activation(cap: ActivationCapture, name: str) -> dict:
    """Hooks on the capture's view: when `name`'s output is the output of a saturating
    activation inside it, `seen["pre"]` is that activation's input (with its graph)."""
    seen: dict = {}
    layer = cap.modules[name]

    def at_layer(module, args, output):  # before the capture's own hook; at every call, so
        act = seen.pop("act", None)  # a layer called twice gives its last call's (as captured)
        if act is not None and act[0] is output:
            seen["pre"] = act[1]
        else:
            seen.pop("pre", None)

    def before(module, args):  # a copy: an in-place activation overwrites its input
        seen[id(module)] = args[0].clone()

    def after(module, args, output):
        seen["act"] = (output, seen.pop(id(module), None))

    layer.register_forward_hook(at_layer, prepend=True)
    for module in layer.modules():
        if isinstance(module, SATURATING):
            module.register_forward_pre_hook(before)
            module.register_forward_hook(after, prepend=True)  # before `at_layer` on itself
    return seen


def _check_units(units: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    """Raise unless every (c, y, x) lies in the layer's (C, H, W) map."""
    bad = (units < 0) | (units >= torch.tensor(shape[1:]))
    if bad.any():
        c, y, x = units[bad.any(dim=1).nonzero()[0, 0]].tolist()
        raise ValueError(
            f"unit (c={c}, y={y}, x={x}) is outside layer {name!r}, whose map is "
            f"{shape[1]}x{shape[2]}x{shape[3]} (C x H x W); give units inside it"
        )


def _chunk(cap, name: str, seen: dict, images: torch.Tensor, units: torch.Tensor):
    """|d unit / d input| summed over input channels, (B, H, W) float32 on the CPU."""
    seen.clear()
    out = cap(images)[name]
    value = seen.get("pre", out)
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        raise ValueError(f"layer {name!r} gives no (N, C, H, W) map; pick a conv-like layer")
    _check_units(units, tuple(value.shape), name)
    b = torch.arange(len(units), device=value.device)
    c, y, x = (units[:, i].to(value.device) for i in range(3))
    if not value.requires_grad:
        raise NotDifferentiable(
            f"layer {name!r} is computed without autograd (torch.no_grad in the forward?), so "
            "it has no input gradient; show its geometric field instead (crop='field')"
        )
    try:
        (grad,) = torch.autograd.grad(value[b, c, y, x].sum(), cap.input, allow_unused=True)
    except RuntimeError as err:  # e.g. an in-place op on a tensor saved for the backward
        raise NotDifferentiable(
            f"the model cannot be differentiated up to layer {name!r} ({err}); show its "
            "geometric field instead (crop='field')"
        ) from err
    if grad is None:  # the units do not depend on the input at all
        return torch.zeros(images.shape[0], *images.shape[2:])
    return grad.abs().sum(dim=1).float().cpu()


def input_gradients(
    model: nn.Module,
    layer: LayerRef,
    images: torch.Tensor,
    units: Sequence[tuple[int, int, int]],
    *,
    device: str | torch.device | None = None,
    chunk: int = CHUNK,
) -> torch.Tensor:
    """Per unit (c, y, x) of `layer` on its image of `images` (B, C, H, W): the gradient
    magnitude summed over input channels, (B, H, W) float32 on the CPU."""
    name = resolve_layer(model, layer)[0]
    units = torch.as_tensor(np.asarray(units, dtype=np.int64).reshape(-1, 3))
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) != len(units):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be (B, C, H, W) with B = {len(units)} units; got {got}")
    grads = []
    with ActivationCapture(model, name, device=device, grad=True) as cap:
        seen = _pre_activation(cap, name)
        for i in range(0, len(units), chunk):
            grads.append(_chunk(cap, name, seen, images[i : i + chunk], units[i : i + chunk]))
    return torch.cat(grads) if grads else torch.zeros(0, *images.shape[2:])


def effective_boxes(
    model: nn.Module,
    layer: LayerRef,
    images: torch.Tensor,
    units: Sequence[tuple[int, int, int]],
    field=None,
    *,
    share: float = SHARE,
    device: str | torch.device | None = None,
    chunk: int = CHUNK,
) -> list[EffectiveBox]:
    """The `EffectiveBox` of each unit (c, y, x) of `layer` on its image of `images`;
    `field`: the layer's `ReceptiveField` at this input size (computed when not given)."""
    share = check_share(share)
    name = resolve_layer(model, layer)[0]
    if field is None:
        from .receptive import receptive_fields

        size = tuple(images.shape[-2:])
        field = receptive_fields(model, size, [name], channels=images.shape[1])[name]
    grads = input_gradients(model, name, images, units, device=device, chunk=chunk).numpy()
    h, w = grads.shape[1:]
    return [
        effective_box(g, field.clipped_box(y, x, h, w), share)
        for g, (_, y, x) in zip(grads, units, strict=True)
    ]


# ---------------------------------------------------------------- coherence ----


@dataclass(frozen=True)
class Coherence:
    """Per group (a channel's patches): `channel`, the mean pairwise cosine similarity of its
    crops' features; `random`, the same for random crops of the same sizes in the same images."""

    channel: np.ndarray
    random: np.ndarray


def random_box(box: Box, height: int, width: int, rng: np.random.Generator) -> Box:
    """A box of `box`'s size placed uniformly at random in a height x width image."""
    h, w = box[1] - box[0], box[3] - box[2]
    y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return y0, y0 + h, x0, x0 + w


def pooled_features(
    model: nn.Module, crops: list[torch.Tensor], layer: LayerRef, size: int, device=None
) -> torch.Tensor:
    """Each crop (C, h, w) resized (bilinear, antialiased) to size x size and `layer`'s output
    averaged over space: (N, D) float32 on the CPU."""
    batch = torch.stack(
        [
            F.interpolate(c[None].float(), (size, size), mode="bilinear", antialias=True)[0]
            for c in crops
        ]
    )
    out = next(iter(capture(model, batch, layer, device=device).values())).float()
    return out.flatten(2).mean(dim=2) if out.ndim > 2 else out


def _mean_pairwise(features: torch.Tensor) -> float:
    n = len(features)
    sim = features @ features.T
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def crop_coherence(
    model: nn.Module,
    groups: Sequence[Sequence[tuple[torch.Tensor, Box]]],
    layer: LayerRef,
    *,
    size: int = 224,
    centre: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch: int = 32,
) -> Coherence:
    """How alike each channel's patches are in `model`'s feature space, against chance.

    `groups`: per channel, its (image (C, H, W), box) pairs (>= 2). Each crop is resized to
    `size` and described by `layer`'s globally pooled output (`pooled_features`), minus the
    mean over every crop of the call when `centre` (post-ReLU features all share one positive
    direction); a group's score is the mean cosine similarity over its pairs. The baseline
    replaces each box by one of the same size placed at random in the same image
    (`random_box`, seeded `seed`).
    """
    rng = np.random.default_rng(seed)
    crops, randoms, sizes = [], [], []
    for group in groups:
        if len(group) < 2:
            raise ValueError(f"each group needs >= 2 crops to compare; got {len(group)}")
        sizes.append(len(group))
        for image, (y0, y1, x0, x1) in group:
            crops.append(image[:, y0:y1, x0:x1])
            r0, r1, c0, c1 = random_box((y0, y1, x0, x1), *image.shape[-2:], rng)
            randoms.append(image[:, r0:r1, c0:c1])
    everything = crops + randoms
    feats = torch.cat(
        [
            pooled_features(model, everything[i : i + batch], layer, size, device)
            for i in range(0, len(everything), batch)
        ]
    )
    feats = F.normalize(feats - feats.mean(dim=0) if centre else feats, dim=1)
    ends, n = np.cumsum(sizes), len(crops)
    channel = [_mean_pairwise(feats[e - k : e]) for k, e in zip(sizes, ends, strict=True)]
    chance = [_mean_pairwise(feats[n + e - k : n + e]) for k, e in zip(sizes, ends, strict=True)]
    return Coherence(np.array(channel), np.array(chance))
