"""Augmentation of training batches on their device: random crop with padding, horizontal flip."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from prune.errors import ConfigError

#: the augmentations ``data.augment`` may name
AUGMENTATIONS = ("crop", "flip")


class DeviceAugment:
    """Random crop with zero padding and random horizontal flip of a batch ``(B, C, H, W)``.

    The CIFAR recipe of He et al. 2016 (sec. 4.2): pad 4 pixels on each side, take a random
    ``H x W`` crop, flip half of the images left-right. It runs on the batch's device, on the raw
    uint8 (or [0, 1] float) images, so the padding is black, as with torchvision's
    ``RandomCrop(padding=4)`` before ``Normalize``. Offsets and flips are drawn from torch's
    default generator of that device, which ``seed_everything`` seeds and checkpoints restore.

    Args:
        augment: names from :data:`AUGMENTATIONS`, applied in that order (crop, then flip).
        crop_padding: pixels of black padding on each side before the random crop (>= 1 when
            ``crop`` is on).

    Raises:
        ConfigError: for an unknown name, a repeated one, or a padding below 1 with ``crop``.
    """

    def __init__(self, augment: Sequence[str] = (), crop_padding: int = 4) -> None:
        names = [augment] if isinstance(augment, str) else list(augment or ())
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown or len(set(names)) != len(names):
            raise ConfigError(
                f"data.augment={names} must list each of {list(AUGMENTATIONS)} at most once "
                "(or be empty)"
            )
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int):
            raise ConfigError(f"data.crop_padding must be an integer >= 1, got {crop_padding!r}")
        if "crop" in names and crop_padding < 1:
            raise ConfigError(
                f"data.crop_padding must be >= 1 with data.augment=[crop, ...], got {crop_padding}"
            )
        self.names = tuple(n for n in AUGMENTATIONS if n in names)
        self.crop_padding = int(crop_padding)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: Tensor) -> Tensor:
        """The augmented batch (a new tensor of the same shape, dtype and device)."""
        if "crop" in self.names:
            x = self.crop(x)
        if "flip" in self.names:
            x = self.flip(x)
        return x

    def crop(self, x: Tensor) -> Tensor:
        """One random ``H x W`` window per image of the zero-padded batch."""
        b, c, h, w = x.shape
        p = self.crop_padding
        padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p), black border
        dev = x.device
        top = torch.randint(0, 2 * p + 1, (b,), device=dev)
        left = torch.randint(0, 2 * p + 1, (b,), device=dev)
        rows = (top[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
        cols = (left[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=dev)[:, None, None, None]
        channel = torch.arange(c, device=dev)[None, :, None, None]
        return padded[batch, channel, rows, cols]  # (B, C, H, W)

    @staticmethod
    def flip(x: Tensor) -> Tensor:
        """Each image mirrored left-right with probability 1/2."""
        mirrored = torch.rand(len(x), device=x.device) < 0.5
        return torch.where(mirrored[:, None, None, None], x.flip(-1), x)
