"""A small VGG: conv-BN-ReLU blocks with max-pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, fraction, int_at_least, is_int


class VGGSmall(nn.Module):
    """VGG-style CNN (Simonyan and Zisserman 2015) with BatchNorm, sized for small images.

    Args:
        in_shape: shape of one input sample ``(C, H, W)``.
        num_classes: number of output logits.
        cfg: layer list; an int is a 3x3 conv-BN-ReLU with that many channels, ``"M"`` a 2x2
            max-pool.
        hidden: width of the hidden fully connected layer.
        dropout: dropout before each fully connected layer.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "cfg": Check(
            "a non-empty list of conv widths >= 1 and 'M' (max-pool)",
            lambda v: (
                isinstance(v, list)
                and bool(v)
                and all(x == "M" or (is_int(x) and x >= 1) for x in v)
            ),
        ),
        "hidden": int_at_least(1),
        "dropout": fraction(closed="left"),
    }

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        cfg: Sequence[int | str] = (32, "M", 64, "M", 128, "M"),
        hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        layers: list[nn.Module] = []
        channels = self.in_shape[0]
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            elif isinstance(item, int) and item > 0:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
                channels = item
            else:
                raise ValueError(
                    f"model.net.cfg entries must be positive ints or 'M', got {item!r}"
                )
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *self.in_shape)).numel()
        self.flatten = nn.Flatten()
        head: list[nn.Module] = []
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head += [nn.Linear(flat, int(hidden)), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(int(hidden), self.num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``(B, num_classes)``."""
        return self.classifier(self.flatten(self.features(x)))
