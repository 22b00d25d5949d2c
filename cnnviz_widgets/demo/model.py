"""Small CNN for the offline digits demo."""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 10
PENULTIMATE = 128


class DigitsCNN(nn.Module):
    """Three conv blocks and a two-layer head for 1x32x32 digit images.

    Layer (output shape for one image):

    - ``conv1`` Conv2d(1, 16, 3, padding=1) -> ``relu1`` -> ``pool1`` MaxPool2d(2): 16x16x16
    - ``conv2`` Conv2d(16, 32, 3, padding=1) -> ``relu2`` -> ``pool2`` MaxPool2d(2): 32x8x8
    - ``conv3`` Conv2d(32, 64, 3, padding=1) -> ``relu3`` -> ``pool3`` MaxPool2d(2): 64x4x4
    - ``avgpool`` AdaptiveAvgPool2d(2): 64x2x2 (keeps fc1 small, so the weights file stays
      ~0.23 MB instead of ~0.62 MB)
    - ``flatten`` -> 256
    - ``fc1`` Linear(256, 128) -> ``relu4``: 128 penultimate features (embedding)
    - ``dropout`` Dropout(0.3) (identity in eval mode) -> ``fc`` Linear(128, 10): logits

    Every ReLU is its own non-inplace module so hooks see each activation untouched.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=False)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=False)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.relu3 = nn.ReLU(inplace=False)
        self.pool3 = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 2 * 2, PENULTIMATE)
        self.relu4 = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(PENULTIMATE, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate 128-d features (after ``relu4``) for a (N, 1, 32, 32) batch."""
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        x = self.flatten(self.avgpool(x))
        return self.relu4(self.fc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10) for a (N, 1, 32, 32) batch."""
        return self.fc(self.dropout(self.features(x)))
