"""A CIFAR-style residual network with BatchNorm and skip additions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from prune.checks import Check, int_at_least, int_list


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut: ``relu(f(x) + s(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """ResNet for small images (He et al. 2016, CIFAR variant).

    Args:
        in_shape: shape of one input sample ``(C, H, W)``.
        num_classes: number of output logits.
        widths: channels of each stage; every stage after the first halves the resolution.
        blocks: residual blocks per stage.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "widths": int_list(1),
        "blocks": int_at_least(1),
    }

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        widths: Sequence[int] = (16, 32, 64),
        blocks: int = 1,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1 or blocks < 1:
            raise ValueError(
                f"model.net.widths must be positive and blocks >= 1, got {widths}, {blocks}"
            )
        self.conv1 = nn.Conv2d(self.in_shape[0], widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        channels = widths[0]
        for i, width in enumerate(widths):
            stage = [BasicBlock(channels, width, stride=1 if i == 0 else 2)]
            stage += [BasicBlock(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits ``(B, num_classes)``."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.layers(out))))
