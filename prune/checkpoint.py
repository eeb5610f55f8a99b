"""Checkpoint files: safe loading, the check that one holds this run's model, and a
Trainer-free save of a (pruned) module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_only

from prune.errors import ConfigError

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


#: what Trainer.fit(ckpt_path=...) needs besides the weights
TRAINING_KEYS = ("pytorch-lightning_version", "optimizer_states", "loops")


def check_checkpoint_fits(
    path: str | Path,
    module: Any,
    key: str = "ckpt_path",
    training: bool = False,
    checkpoint: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load ``path`` safely and check it holds ``module``'s (dense or equally pruned) model.

    With ``training=True`` it must also hold what ``Trainer.fit`` resumes from (optimizer
    and loop state), not weights only. ``checkpoint``: the file's contents when the caller
    has loaded them already (``path`` then only names it in errors).
    """
    ckpt = load_checkpoint(path) if checkpoint is None else checkpoint
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise ConfigError(f"{key}={str(path)!r} is not a Lightning checkpoint (no 'state_dict')")
    missing = [k for k in TRAINING_KEYS if k not in ckpt] if training else []
    if missing:
        raise ConfigError(
            f"{key}={str(path)!r} cannot resume training: it lacks {missing} (a weights-only "
            "checkpoint; evaluate it with evaluate.py, or resume from a last.ckpt)"
        )
    stored = ckpt.get("pruning_plan")
    current = None if module.plan is None else module.plan.to_dict()
    if stored != current:
        what = "a pruned model" if stored is not None else "a dense model"
        raise ConfigError(
            f"{key}={str(path)!r} holds {what} with another pruning plan than this run's "
            f"{'dense model' if current is None else 'pruned model'}"
        )
    mine = module.state_dict()
    theirs = ckpt["state_dict"]
    for name, tensor in mine.items():
        if name not in theirs:
            raise ConfigError(f"{key}={str(path)!r} lacks parameter {name!r} of this model")
        if tuple(theirs[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{key}={str(path)!r} holds another model: {name!r} has shape "
                f"{tuple(theirs[name].shape)}, this model needs {tuple(tensor.shape)}"
            )
    extra = sorted(set(theirs) - set(mine))
    if extra:
        raise ConfigError(f"{key}={str(path)!r} holds another model: unexpected {extra[0]!r}")
    return dict(ckpt)
