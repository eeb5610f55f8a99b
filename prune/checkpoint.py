"""Checkpoint files: safe loading, and a Trainer-free save of a (pruned) module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_only

if TYPE_CHECKING:
    from prune.module import ClassifierModule


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint safely (``weights_only=True``) with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"ckpt_path={str(path)!r} could not be loaded safely (weights_only=True): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err


def save_weights(module: ClassifierModule, path: Path) -> Path:
    """A checkpoint without a Trainer (weights, plan, config) that ``evaluate.py`` can load."""
    if rank_zero_only.rank != 0:  # under DDP every rank holds the same weights
        return path
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)  # atomic: a reader sees the old file or the new one
    return path
