"""Shared pieces of the reliability tests: tiny configs, a crash callback, odd models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from tests.conftest import FAST

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python process: the repository first on ``PYTHONPATH``, ahead
    of what the parent had there (packages installed by path stay importable)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


#: a run of a few seconds: small synthetic data, a small MLP, one epoch of a few batches
TINY_BASE = [
    *FAST,
    "~logger",
    "threads=1",  # the same float sums whatever else the machine runs (threads=auto adapts)
    "data.batch_size=32",
    "data.eval_batch_size=32",
    "model.net.hidden=[24,12]",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "retrain.max_epochs=1",
    "data.relevance_per_class=8",
    "measure.latency_batches=[1]",
    "measure.latency_repeats=1",
]
TINY = [*TINY_BASE, "data.num_train=480", "data.num_test=96"]

#: TINY with one LRP pruning round of the hidden units
TINY_PRUNE = [*TINY, "pruner=lrp", "pruner.ratio=0.5"]


def volatile(row: dict) -> dict:
    """A results row without what legitimately differs between runs (paths, latency)."""
    return {k: v for k, v in row.items() if k != "checkpoint" and not k.startswith("cost/latency")}


class CrashAt(L.Callback):
    """Raise at the start of epoch ``epoch`` of the ``fit``-th ``Trainer.fit`` of a process.

    Simulates a job killed during retraining (after epoch ``epoch - 1`` was checkpointed).
    """

    fits: ClassVar[int] = 0

    def __init__(self, fit: int, epoch: int) -> None:
        self.fit, self.epoch = fit, epoch

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        CrashAt.fits += 1
        self._mine = CrashAt.fits

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._mine == self.fit and trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated interruption")


class GlobalPoolNet(nn.Module):
    """A classifier whose input first goes through a global pool: input pruning cannot apply."""

    def __init__(self, in_shape, num_classes: int) -> None:
        super().__init__()
        self.in_shape, self.num_classes = tuple(in_shape), int(num_classes)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_shape[0] * 16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(x)))


def tiny_state(hidden: tuple[int, ...] = (8,)) -> dict:
    """A checkpoint-like dict of a dense MLP on 1x28x28, 4 classes."""
    from prune.models import MLP
    from prune.module import ClassifierModule

    module = ClassifierModule(MLP((1, 28, 28), 4, hidden=hidden))
    return {
        "state_dict": module.state_dict(),
        "pruning_plan": None,
        "run_config": None,
        "pytorch-lightning_version": "2.6.0",
        "optimizer_states": [],
        "loops": {},
    }


__all__ = ["TINY", "TINY_BASE", "TINY_PRUNE", "CrashAt", "GlobalPoolNet", "tiny_state", "torch"]

#: relevance pass for the DDP test: 8 images per class x 4 classes, batch 16 (2 ranks x 1 batch)
DDP_OVERRIDES = [*TINY_PRUNE, "data.eval_batch_size=16", "trainer.enable_model_summary=false"]

#: DDP_OVERRIDES with sizes that no world size of 2 or 3 divides: 31 relevance images (the whole
#: validation split) and 61 test images, in evaluation batches of 5, so that shards differ in
#: length and ranks in their number of batches (2 ranks: 16 + 15 relevance images, 4 and 3
#: batches; 3 ranks: 11 + 10 + 10, 3, 2 and 2 batches)
DDP_UNEVEN_OVERRIDES = [
    *DDP_OVERRIDES,
    "data.num_test=61",
    "data.val_size=31",
    "data.relevance_set=val",
    "data.relevance_per_class=null",
    "data.eval_batch_size=5",
]
