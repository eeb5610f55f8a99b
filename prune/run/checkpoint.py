"""Checkpoint files: safe loading (for Lightning too), atomic saving, the check that one holds
this run's model, and a Trainer-free save of a (pruned) module."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from prune.errors import ConfigError
from prune.run.stored_config import check_stored_config

if TYPE_CHECKING:
    from prune.module import ClassifierModule


def load_checkpoint(
    path: str | Path, key: str = "ckpt_path", map_location: Any = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint as data only, with one-line errors naming ``key``.

    ``weights_only=True`` is passed explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` in the
    environment cannot turn it off (torch honours that variable only where the caller left
    ``weights_only`` unset).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{key}={str(path)!r} could not be loaded safely (weights_only=True): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err


def save_atomic(checkpoint: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file, flushed to disk, then renamed over ``path``: a reader
    (or a run killed while saving) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O through :func:`load_checkpoint` and :func:`save_atomic`.

    Every Trainer of the pipeline gets it, so ``fit(ckpt_path=...)`` on resume and
    ``test(ckpt_path=best)`` load data only, and ``last.ckpt`` is replaced atomically.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("SafeCheckpointIO takes no storage_options")
        save_atomic(checkpoint, path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        return load_checkpoint(path, key="checkpoint", map_location=map_location)


def check_finite(state_dict: Mapping[str, Any], key: str, path: str | Path) -> None:
    """Refuse weights holding NaN or infinite values (a model trained into divergence)."""
    bad = {
        name: int((~torch.isfinite(t)).sum())
        for name, t in state_dict.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()
    }
    if bad:
        names = ", ".join(f"{n} ({c})" for n, c in list(bad.items())[:3])
        raise ConfigError(
            f"{key}={str(path)!r} holds {sum(bad.values())} NaN/infinite weights in "
            f"{len(bad)} tensors ({names}{', ...' if len(bad) > 3 else ''}); use a checkpoint "
            "of a run that did not diverge"
        )


def save_weights(module: ClassifierModule, path: Path) -> Path:
    """A checkpoint without a Trainer (weights, plan, config) that ``evaluate.py`` can load."""
    if rank_zero_only.rank != 0:  # under DDP every rank holds the same weights
        return path
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    return save_atomic(checkpoint, path)


#: what Trainer.fit(ckpt_path=...) needs besides the weights
TRAINING_KEYS = ("pytorch-lightning_version", "optimizer_states", "loops")


def checked_checkpoint(
    path: str | Path,
    key: str = "ckpt_path",
    checkpoint: Mapping[str, Any] | None = None,
    foreign: bool = True,
) -> Mapping[str, Any]:
    """``path``'s contents, loaded as data, holding a ``state_dict``; with ``foreign`` (a file
    from outside this run) its stored config must pass
    :func:`prune.run.stored_config.check_stored_config` too. ``checkpoint``: the contents when
    the caller has loaded them already (``path`` then only names it in errors)."""
    ckpt = load_checkpoint(path, key=key) if checkpoint is None else checkpoint
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise ConfigError(f"{key}={str(path)!r} is not a Lightning checkpoint (no 'state_dict')")
    if foreign:
        check_stored_config(ckpt.get("run_config"), key, path)
    return ckpt


def check_checkpoint_fits(
    path: str | Path,
    module: Any,
    key: str = "ckpt_path",
    training: bool = False,
    checkpoint: Mapping[str, Any] | None = None,
    foreign: bool = True,
) -> dict[str, Any]:
    """Load ``path`` safely and check it holds ``module``'s (dense or equally pruned) model.

    With ``training=True`` it must also hold what ``Trainer.fit`` resumes from (optimizer
    and loop state), not weights only. ``checkpoint``: the file's contents when the caller
    has loaded them already (``path`` then only names it in errors). ``foreign``: see
    :func:`checked_checkpoint` (a run's own checkpoints, read back on resume, hold the config the
    run was checked with).
    """
    ckpt = checked_checkpoint(path, key, checkpoint, foreign)
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
    check_finite(theirs, key, path)
    return dict(ckpt)
