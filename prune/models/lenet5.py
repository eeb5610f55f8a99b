"""LeNet-5 as in Caffe's MNIST example (conv 20, conv 50, fc 500)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, int_at_least, int_list


class LeNet5(nn.Module):
    """LeNet-5-Caffe: conv 20 5x5, max-pool, conv 50 5x5, max-pool, fc 500, fc classes.

    ReLU follows every convolution and the hidden fully connected layer.

    Args:
        in_shape: shape of one input sample ``(C, H, W)``; H and W must be at least 12.
        num_classes: number of output logits.
        channels: widths of the two convolutions.
        hidden: width of the hidden fully connected layer.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "channels": int_list(1, length=2),
        "hidden": int_at_least(1),
    }

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (20, 50),
        hidden: int = 500,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        if len(self.in_shape) != 3 or min(self.in_shape[1:]) < 12:
            raise ValueError(
                f"lenet5 needs images (C, H, W) with H, W >= 12, got in_shape={self.in_shape}"
            )
        self.num_classes = int(num_classes)
        c1, c2 = (int(c) for c in channels)
        self.features = nn.Sequential(
            nn.Conv2d(self.in_shape[0], c1, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *self.in_shape)).numel()
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(flat, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), self.num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``(B, num_classes)``."""
        return self.classifier(self.flatten(self.features(x)))
