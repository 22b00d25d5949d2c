"""A small colour CNN with 7x7 first-layer kernels, trained on procedural images.

>>> model, dataset, classes = load_gabor_cnn()
>>> FilterGrid(model)  # conv1: 32 RGB tiles of 7x7, oriented and colour-opponent

The training images are made by :func:`make_images` (no files, no downloads): a random
background covered with random coloured discs, and on top either a colour grating in a round
window (class = its orientation, 4 steps of 45°, and its colour axis, red/green or blue/yellow)
or a filled shape (square, triangle, cross, ring). Telling them apart needs oriented and
colour-opponent edge detectors, which is what the first layer learns, given a small start
and weight decay (see :mod:`cnnviz_widgets.demo.train_gabor`).

:func:`orientation_selectivity` is the measure the tests use to check that the shipped filters
are oriented; a random initialisation scores far lower.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = [
    "GABOR_CLASSES",
    "GABOR_WEIGHTS_PATH",
    "GaborCNN",
    "GaborDataset",
    "load_gabor_cnn",
    "make_images",
    "orientation_selectivity",
]

GABOR_WEIGHTS_PATH = Path(__file__).with_name("gabor_cnn.pt")
SIZE = 64
MEAN = 0.5  # fixed input normalisation: (x - MEAN) / STD on the 0..1 scale
STD = 0.25
ORIENTATIONS = (0, 45, 90, 135)  # degrees, anticlockwise from horizontal stripes' normal
AXES = ("red/green", "blue/yellow")
SHAPES = ("square", "triangle", "cross", "ring")
GABOR_CLASSES = [f"grating {o}° {a}" for a in AXES for o in ORIENTATIONS] + list(SHAPES)
N_GRATINGS = len(AXES) * len(ORIENTATIONS)


class GaborCNN(nn.Module):
    """Three conv layers and a linear classifier for 3x64x64 colour images.

    - ``conv1`` Conv2d(3, 32, 7, stride=2, padding=3) -> ``relu1`` -> ``pool1`` MaxPool2d(2):
      32x16x16
    - ``conv2`` Conv2d(32, 64, 3, padding=1) -> ``bn2`` -> ``relu2`` -> ``pool2`` MaxPool2d(2):
      64x8x8
    - ``conv3`` Conv2d(64, 128, 3, padding=1) -> ``bn3`` -> ``relu3``: 128x8x8
    - ``avgpool`` AdaptiveAvgPool2d(1) -> ``flatten``: 128 penultimate features
    - ``fc`` Linear(128, 12): logits of :data:`GABOR_CLASSES`
    """

    def __init__(self, num_classes: int = len(GABOR_CLASSES)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu3 = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 12) for a normalised (N, 3, 64, 64) batch."""
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(self.flatten(self.avgpool(x)))


# --------------------------------------------------------------------------------------------
# procedural images


def _grid(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (n, size, size) for y and x."""
    r = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return yy.expand(n, size, size), xx.expand(n, size, size)


def _u(gen: torch.Generator, *shape: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=gen)


def _paint(canvas: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Blend (n, 3) colours into (n, 3, H, W) canvases where (n, H, W) mask is 0..1."""
    m = mask[:, None]
    return canvas * (1 - m) + colour[:, :, None, None] * m


def _soft(d: torch.Tensor) -> torch.Tensor:
    """Anti-aliased inside test: d is a signed distance in pixels, negative inside."""
    return (0.5 - d).clamp(0.0, 1.0)


def _axis_colours(axis: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two opposite colours per image on its axis: red/green (0) or blue/yellow (1)."""
    n = axis.numel()
    a = _u(gen, n, 1, lo=0.25, hi=0.45)
    mid = _u(gen, n, 3, lo=0.35, hi=0.65)
    direction = torch.where(
        axis[:, None] == 0,
        torch.tensor([[1.0, -1.0, 0.0]]),
        torch.tensor([[-1.0, -1.0, 1.0]]) / math.sqrt(1.5),  # blue against yellow
    )
    jitter = _u(gen, n, 3, lo=-0.06, hi=0.06)
    return (mid + a * direction + jitter).clamp(0, 1), (mid - a * direction + jitter).clamp(0, 1)


def _shape_mask(kind: torch.Tensor, yy, xx, cy, cx, r, angle) -> torch.Tensor:
    """Soft masks (n, H, W) of each image's shape (0 square, 1 triangle, 2 cross, 3 ring)."""
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    dy, dx = yy - cy[:, None, None], xx - cx[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    rr = r[:, None, None]
    square = torch.maximum(u.abs(), v.abs()) - rr * 0.8
    # equilateral triangle: the max of three half-plane distances
    tri = (
        torch.stack(
            [
                u * math.cos(t) + v * math.sin(t)
                for t in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)
            ]
        ).amax(0)
        - rr * 0.5
    )
    arm = rr * 0.28
    cross = torch.minimum(
        torch.maximum(u.abs() - rr, v.abs() - arm), torch.maximum(v.abs() - rr, u.abs() - arm)
    )
    dist = torch.sqrt(u * u + v * v)
    ring = (dist - rr * 0.75).abs() - rr * 0.22
    d = torch.stack([square, tri, cross, ring])  # (4, n, H, W)
    pick = kind.view(1, -1, 1, 1).expand(1, *d.shape[1:])
    return _soft(d.gather(0, pick)[0])


def make_images(
    n: int, seed: int | torch.Generator = 0, size: int = SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` procedural images (n, 3, size, size) in 0..1 and their labels (n,) int64.

    Labels index :data:`GABOR_CLASSES`: 0-7 gratings (orientation, colour axis), 8-11 shapes.
    The same ``seed`` gives the same images.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    yy, xx = _grid(n, size)
    canvas = _u(gen, n, 3)[:, :, None, None].expand(n, 3, size, size).clone()
    for _ in range(5):  # clutter: random discs
        cy, cx = _u(gen, n, hi=size), _u(gen, n, hi=size)
        r = _u(gen, n, lo=3, hi=size * 0.3)
        d = torch.sqrt((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)
        keep = (torch.rand(n, generator=gen) < 0.7).float()[:, None, None]
        canvas = _paint(canvas, _soft(d - r[:, None, None]) * keep, _u(gen, n, 3))
    labels = torch.randint(0, len(GABOR_CLASSES), (n,), generator=gen)
    cy = _u(gen, n, lo=size * 0.35, hi=size * 0.65)
    cx = _u(gen, n, lo=size * 0.35, hi=size * 0.65)
    r = _u(gen, n, lo=size * 0.22, hi=size * 0.34)
    is_grating = labels < N_GRATINGS
    # gratings: a sinusoid between two opposite colours, in a round window
    orient = torch.tensor(ORIENTATIONS, dtype=torch.float32)[labels % len(ORIENTATIONS)]
    theta = torch.deg2rad(orient + _u(gen, n, lo=-8, hi=8))
    period = _u(gen, n, lo=5, hi=11)
    phase = _u(gen, n, hi=2 * math.pi)
    axis = (labels // len(ORIENTATIONS)).clamp(max=len(AXES) - 1)
    c1, c2 = _axis_colours(axis, gen)
    proj = torch.cos(theta)[:, None, None] * xx + torch.sin(theta)[:, None, None] * yy
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * proj / period[:, None, None] + phase[:, None, None])
    grating = c1[:, :, None, None] * wave[:, None] + c2[:, :, None, None] * (1 - wave[:, None])
    dist = torch.sqrt((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)
    window = _soft(dist - r[:, None, None])[:, None]
    with_grating = canvas * (1 - window) + grating * window
    # shapes: a filled shape of one random colour
    kind = (labels - N_GRATINGS).clamp(min=0)
    mask = _shape_mask(kind, yy, xx, cy, cx, r, _u(gen, n, hi=2 * math.pi))
    with_shape = _paint(canvas, mask, _u(gen, n, 3))
    images = torch.where(is_grating[:, None, None, None], with_grating, with_shape)
    images = images + 0.03 * torch.randn(images.shape, generator=gen)
    return images.clamp_(0.0, 1.0), labels


def normalize(images: torch.Tensor) -> torch.Tensor:
    """0..1 images -> the model's input scale."""
    return (images - MEAN) / STD


class GaborDataset(Dataset):
    """``n`` procedural images: ``dataset[i]`` is ``(normalised tensor 3x64x64, label)``."""

    def __init__(self, n: int = 240, seed: int = 1) -> None:
        unit, labels = make_images(n, seed)
        self._unit = unit
        self._inputs = normalize(unit)
        self.targets = labels.numpy().astype(np.int64)
        self.classes = list(GABOR_CLASSES)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._inputs[i], int(self.targets[i])

    def image(self, i: int) -> np.ndarray:
        """Displayable uint8 (64, 64, 3) image of sample ``i``."""
        return (self._unit[i] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@lru_cache(maxsize=1)
def _load_state() -> dict[str, torch.Tensor]:
    return torch.load(GABOR_WEIGHTS_PATH, map_location="cpu", weights_only=True)


def load_gabor_cnn(n: int = 240) -> tuple[GaborCNN, GaborDataset, list[str]]:
    """``(model, dataset, classes)``: the shipped Gabor CNN in eval mode and ``n`` test images
    (seeded differently from the training stream)."""
    model = GaborCNN()
    model.load_state_dict(_load_state())
    return model.eval(), GaborDataset(n), list(GABOR_CLASSES)


# --------------------------------------------------------------------------------------------
# orientation selectivity


def orientation_selectivity(weight: torch.Tensor | np.ndarray, fft_size: int = 32) -> np.ndarray:
    """Orientation selectivity index in 0..1 of each filter of a (N, C, k, k) weight.

    Each input channel's kernel has its mean removed (the DC term) and is zero-padded to
    ``fft_size``; the power spectra of the channels are summed to P(f). With φ(f) the angle
    of frequency f, the index is |Σ P(f) e^{2iφ(f)}| / Σ P(f) over f ≠ 0: the resultant
    length of the spectrum's orientations (doubled angles, as orientation repeats every 180°).
    A pure grating scores near 1, a centre-surround blob or white noise near 0.
    """
    w = torch.as_tensor(np.asarray(weight), dtype=torch.float64)
    w = w - w.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(w, s=(fft_size, fft_size)).abs().pow(2).sum(1)  # (N, F, F)
    f = torch.fft.fftfreq(fft_size, dtype=torch.float64)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    phase = torch.exp(2j * torch.atan2(fy, fx))
    phase[0, 0] = 0  # DC has no orientation
    power[:, 0, 0] = 0
    total = power.sum((-2, -1)).clamp_min(1e-30)
    return ((power * phase).sum((-2, -1)).abs() / total).numpy()
