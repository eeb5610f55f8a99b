"""The explain step of a round: the relevance pass over the relevance set, and the labelled
batches that gradient criteria read instead."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from prune.lrp import RelevanceStats
from prune.module import ClassifierModule
from prune.run.build import make_trainer


def explain(
    cfg: DictConfig, module: ClassifierModule, dm: Any, composite: Any, record: list[str]
) -> RelevanceStats:
    """Run the relevance pass over the relevance set with a Trainer in grad mode.

    The accumulator is ``cfg.relevance`` (a partial of
    :class:`~prune.callbacks.relevance.RelevanceAccumulator`) given the composite, the modules
    to ``record`` and the class count.
    """
    acc = instantiate(cfg.relevance)(composite, record=record, num_classes=dm.num_classes)
    trainer = make_trainer(
        cfg,
        version=None,
        callbacks=False,
        inference_mode=False,  # LRP needs gradients; validate() defaults to inference mode
        enable_progress_bar=False,
        limit_val_batches=None,  # all of the relevance set, whatever trainer.limit_val_batches
    )
    trainer.callbacks.append(acc)
    trainer.validate(module, dataloaders=dm.relevance_dataloader(), verbose=False)
    return acc.stats


def labelled_batches(
    dm: Any, module: ClassifierModule, limit: int = 20
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A few normalised relevance-set batches on the module's device (for gradient criteria)."""
    batches = []
    for i, (x, y) in enumerate(dm.relevance_dataloader()):
        if i >= limit:
            break
        batches.append((module.normalize(x.to(module.device)), y.to(module.device)))
    return batches
