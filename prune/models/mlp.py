"""Multi-layer perceptron (LeNet-300-100 by default)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from prune.checks import Check, fraction, int_list


class MLP(nn.Module):
    """Fully connected ReLU network on flattened images.

    LeNet-300-100 (LeCun et al. 1998) with the default ``hidden=(300, 100)``.

    Args:
        in_shape: shape of one input sample, e.g. ``(1, 28, 28)``.
        num_classes: number of output logits.
        hidden: widths of the hidden layers.
        dropout: dropout probability after each hidden layer (0 disables it).
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "hidden": int_list(1),
        "dropout": fraction(closed="left"),
    }

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (300, 100),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(
                f"model.net.hidden must be a non-empty list of widths >= 1, got {list(hidden)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.net.dropout must be in [0, 1), got {dropout}")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.flatten = nn.Flatten()
        widths = [math.prod(self.in_shape), *(int(h) for h in hidden)]
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], self.num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``(B, num_classes)`` for images ``(B, *in_shape)``."""
        return self.layers(self.flatten(x))
