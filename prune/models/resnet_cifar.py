"""ResNet-20/32/44/56/110: the residual networks of He et al. 2016 for CIFAR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import nn

from prune.checks import Check, int_list, is_int
from prune.models.resnet_small import ResNetSmall


def _is_depth(depth: object) -> bool:
    """``6n + 2`` with n >= 1."""
    return is_int(depth) and depth >= 8 and (depth - 2) % 6 == 0


class ResNetCIFAR(ResNetSmall):
    """ResNet of depth ``6n + 2`` in the CIFAR layout (He et al. 2016, sec. 4.2).

    A 3x3 conv of 16 channels, then 3 stages of ``n`` basic blocks (two 3x3 conv-BN layers and
    a shortcut) with 16, 32 and 64 channels, the last two halving the resolution, then global
    average pooling and one linear layer: ``6n + 2`` weighted layers (ResNet-20: n = 3,
    ResNet-56: n = 9). About 0.27M parameters for ResNet-20 and 0.86M for ResNet-56.

    The shortcut where the shape changes is option B of the paper (a 1x1 conv with BN), not
    option A (stride-2 subsampling with zero-padded channels): physical channel pruning cuts the
    1x1 conv's channels together with the block's, where zero-padded identity channels would
    have to be tracked apart. Option B adds two 1x1 convs (about 3k parameters for ResNet-56).

    Convolutions get He (Kaiming) normal initialisation (fan-out), BatchNorm weight 1, bias 0.

    Args:
        in_shape: ``(C, H, W)`` of one image (any size; 32x32 in the paper).
        num_classes: number of output logits.
        depth: ``6n + 2`` with n >= 1: 8, 14, 20, 26, 32, 44, 56, 110, ...
        widths: channels of the three stages.

    Raises:
        ValueError: for a depth that is not ``6n + 2``.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "depth": Check("6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...)", _is_depth),
        "widths": int_list(1, length=3),
    }

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        depth: int = 20,
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        if not _is_depth(depth):
            raise ValueError(
                f"model.net.depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), "
                f"got {depth!r}"
            )
        super().__init__(in_shape, num_classes, widths=widths, blocks=(depth - 2) // 6)
        self.depth = depth
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
