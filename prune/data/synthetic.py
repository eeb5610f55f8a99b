"""Synthetic images whose label is decided by one known block of pixels (for tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from prune.checks import Check, int_at_least, int_list
from prune.data.base import TensorDataModule
from prune.errors import ConfigError


class SyntheticDataModule(TensorDataModule):
    """Noise images in which only a known block carries the class.

    Each class has a fixed random binary pattern; every image shows its class's pattern inside
    ``block`` (bright = 255 where the pattern is 1, dark elsewhere in the block) and uniform
    noise everywhere else, so the noise holds no information about the label.

    Args:
        num_train: training images (validation is split from these).
        num_test: test images.
        image_shape: ``(C, H, W)`` of each image.
        num_classes: number of classes generated (>= 2); also the datamodule's class count
            (see :class:`TensorDataModule`), so a split without some class is allowed.
        block: ``(top, left, height, width)`` of the deciding block.
        data_seed: seed of the class patterns and the images.
        **kwargs: see :class:`TensorDataModule`.
    """

    source = "synthetic"

    config_checks: ClassVar[dict[str, Check]] = {
        "num_train": int_at_least(1),
        "num_test": int_at_least(1),
        "image_shape": int_list(1, length=3),
        "num_classes": int_at_least(2),  # the classes it generates: null is not allowed here
        "block": int_list(0, length=4),
        "data_seed": int_at_least(0),
    }

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 500,
        image_shape: Sequence[int] = (1, 16, 16),
        num_classes: int = 4,
        block: Sequence[int] = (2, 2, 4, 4),
        data_seed: int = 0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("val_size", 0.1)
        if num_classes is None or isinstance(num_classes, bool) or int(num_classes) < 2:
            raise ConfigError(
                f"data.num_classes must be an integer >= 2 for synthetic data (the classes it "
                f"generates), got {num_classes}"
            )
        super().__init__(num_classes=int(num_classes), **kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        top, left, height, width = (int(b) for b in block)
        _, h, w = self.image_shape
        if top < 0 or left < 0 or top + height > h or left + width > w or height * width < 2:
            raise ValueError(
                f"data.block={list(block)} does not fit in images of shape {self.image_shape}"
            )
        if num_classes > 2 ** (height * width):
            raise ValueError(f"data.block={list(block)} too small for {num_classes} classes")
        self.num_train, self.num_test = int(num_train), int(num_test)
        self.synthetic_classes, self.block, self.data_seed = (
            int(num_classes),
            (top, left, height, width),
            int(data_seed),
        )

    def signal_mask(self) -> Tensor:
        """Boolean mask ``(C, H, W)`` of the deciding block."""
        top, left, height, width = self.block
        mask = torch.zeros(self.image_shape, dtype=torch.bool)
        mask[:, top : top + height, left : left + width] = True
        return mask

    def _make(self, n: int, gen: Tensor, patterns: Tensor) -> tuple[Tensor, Tensor]:
        top, left, height, width = self.block
        y = torch.arange(n) % self.synthetic_classes
        y = y[torch.randperm(n, generator=gen)]
        x = torch.randint(0, 256, (n, *self.image_shape), generator=gen, dtype=torch.uint8)
        x[:, :, top : top + height, left : left + width] = patterns[y].unsqueeze(1) * 255
        return x, y

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.data_seed)
        _, height, width = 0, self.block[2], self.block[3]
        codes = torch.randperm(2 ** (height * width), generator=gen)[: self.synthetic_classes]
        bits = (codes.unsqueeze(1) >> torch.arange(height * width)) & 1  # (K, h*w)
        patterns = bits.view(-1, height, width).to(torch.uint8)
        x, y = self._make(self.num_train, gen, patterns)
        x_test, y_test = self._make(self.num_test, gen, patterns)
        return x, y, x_test, y_test
