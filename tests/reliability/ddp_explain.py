"""Explain and test a saved model with DDP on CPU: ``python ddp_explain.py STATE OUT DEVICES``.

Run by test_ddp.py in a subprocess (gloo): Lightning's DDP launcher re-runs this script for the
other ranks. The run is configured by ``DDP_UNEVEN_OVERRIDES``. Rank 0 writes to the folder OUT:

- ``run.pt``: the reduced RelevanceStats and the resulting plan, the metrics ``trainer.test``
  returns, and the number of test samples that the ranks evaluated together;
- ``reduce.pt`` (afterwards, not in one process): what ``reduce_stats`` gives when only rank 0
  has sums (a rank that got no batch must still take part) and when no rank has any.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch


class CountTestSamples(L.Callback):
    """Count the test samples every rank evaluates; ``total`` is their sum over the ranks."""

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.local = torch.zeros((), dtype=torch.long, device=pl_module.device)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: tuple[torch.Tensor, torch.Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.local += len(batch[1])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.total = int(trainer.strategy.reduce(self.local.clone(), reduce_op="sum"))


def _fields(stats: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(stats).items() if k != "num_classes"}


def run(state_path: str, out_dir: str, devices: int) -> tuple[Any, L.Trainer]:
    """Explain and test; write ``run.pt``. Returns the reduced stats and the test Trainer."""
    from hydra.utils import instantiate

    from prune.run.build import build_composite, build_datamodule, build_module, make_trainer
    from prune.run.explain import explain
    from tests.conftest import compose_cfg
    from tests.reliability.helpers import DDP_UNEVEN_OVERRIDES

    overrides = [*DDP_UNEVEN_OVERRIDES]
    if devices > 1:
        overrides += ["trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={devices}"]
    cfg = compose_cfg("train", overrides)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    module.load_state_dict(torch.load(state_path, weights_only=True))
    pruner = instantiate(cfg.pruner)
    record = pruner.record_names(module.net)
    stats = explain(cfg, module, dm, build_composite(cfg, dm), record)
    counter = CountTestSamples()
    trainer = make_trainer(cfg, version=None, callbacks=False, enable_progress_bar=False)
    trainer.callbacks.append(counter)
    metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
    rank = trainer.global_rank
    if rank == 0:
        plan = pruner.plan(module.net, stats=stats)
        result = {
            "stats": _fields(stats),
            "plan": plan.to_dict(),
            "test": {"acc": float(metrics["test/acc"]), "loss": float(metrics["test/loss"])},
            "test_count": counter.total,
        }
        torch.save(result, Path(out_dir) / "run.pt")
    return stats, trainer


def check_reduce(stats: Any, trainer: L.Trainer, out_dir: str) -> None:
    """``reduce_stats`` with sums on rank 0 only, and on no rank; write ``reduce.pt``."""
    from prune.callbacks.relevance import reduce_stats
    from prune.lrp import RelevanceStats

    rank, device = trainer.global_rank, trainer.strategy.root_device
    empty = RelevanceStats(stats.num_classes)
    only_rank0 = reduce_stats(stats if rank == 0 else empty, trainer.strategy, device)
    none = reduce_stats(RelevanceStats(stats.num_classes), trainer.strategy, device)
    if rank == 0:
        out = {"only_rank0": _fields(only_rank0), "none_samples": none.num_samples}
        torch.save(out, Path(out_dir) / "reduce.pt")


if __name__ == "__main__":
    state_path, out_dir, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
    check_reduce(*run(state_path, out_dir, devices), out_dir)
