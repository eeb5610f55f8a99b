"""Augmentation of training batches on their device: random crop with padding, horizontal flip."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from prune.checks import Check, int_at_least
from prune.data.base import TensorDataModule
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


class AugmentedDataModule(TensorDataModule):
    """A :class:`TensorDataModule` whose training batches can be augmented on the device.

    With ``augment`` set, training batches (and only those: validation, test and the relevance
    pass are never augmented) go through :class:`DeviceAugment` right after they reach the
    device, and then through the LightningModule's own ``on_after_batch_transfer`` (its
    normalisation). Without it, this datamodule adds no hook and the batches are untouched.

    Args:
        augment: augmentations of training batches, a list of ``crop`` and ``flip`` (empty or
            None: none).
        crop_padding: black pixels padded on each side before the random crop.
        **kwargs: see :class:`TensorDataModule`.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "augment": Check(
            f"a list of {list(AUGMENTATIONS)}, each at most once, or null",
            lambda v: (
                isinstance(v, (list, tuple))
                and all(n in AUGMENTATIONS for n in v)
                and len(set(v)) == len(v)
            ),
            nullable=True,
        ),
        "crop_padding": int_at_least(0),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """The random crop needs a padding of at least 1."""
        if "crop" in (values.get("augment") or ()) and values.get("crop_padding", 4) == 0:
            raise ConfigError(f"{prefix}crop_padding must be >= 1 with {prefix}augment=[crop, ...]")

    def __init__(
        self, augment: Sequence[str] | None = None, crop_padding: int = 4, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.augmentation = DeviceAugment(augment or (), crop_padding)
        if self.augmentation:
            # Bound on the instance, not defined on the class: Lightning calls a datamodule's
            # batch hook *instead of* the LightningModule's when the datamodule overrides it, so
            # the hook exists only when there is something to augment, and it hands the batch on
            # to the module's hook itself (both run; Lightning's warning about it is moot).
            self.on_after_batch_transfer = self._augment_then_module_hook
            warnings.filterwarnings(
                "ignore", message="You have overridden `on_after_batch_transfer` in both"
            )

    def _augment_then_module_hook(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training:
            x, y = batch
            batch = (self.augmentation(x), y)
        module = trainer.lightning_module if trainer is not None else None
        return module.on_after_batch_transfer(batch, dataloader_idx) if module else batch

    def describe(self) -> dict[str, Any]:
        """Facts for results.json, with the augmentation of training batches."""
        facts = super().describe()
        facts["augment"] = list(self.augmentation.names)
        if "crop" in self.augmentation.names:
            facts["crop_padding"] = self.augmentation.crop_padding
        return facts
