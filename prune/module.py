"""ClassifierModule: the LightningModule around a plain network; carries the pruning plan."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from prune import rng
from prune.pruning.plan import PruningPlan


class ClassifierModule(L.LightningModule):
    """Cross-entropy classifier with accuracy metrics and ``stage/metric`` logging.

    Args:
        net: a plain ``nn.Module`` with attributes ``in_shape`` and ``num_classes``.
        optimizer: factory ``optimizer(params=...)`` (a Hydra ``_partial_``).
        scheduler: optional factory ``scheduler(optimizer=...)`` (stepped every epoch).
        run_config: plain dict of the run's resolved config, stored in checkpoints so that a
            checkpoint alone can rebuild its model.
        mean: per-channel mean of the [0, 1]-scaled inputs (from the datamodule).
        std: per-channel standard deviation of the [0, 1]-scaled inputs.

    Batches arrive on the device as raw uint8 (or float in [0, 1]) images and are normalised
    there in :meth:`on_after_batch_transfer`; ``forward`` takes normalised images.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        run_config: Mapping[str, Any] | None = None,
        mean: Sequence[float] | Tensor = (0.0,),
        std: Sequence[float] | Tensor = (1.0,),
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1))
        self.net = net
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self.scheduler_factory = scheduler
        self.run_config = dict(run_config) if run_config is not None else None
        self.plan: PruningPlan | None = None
        self.explain_only = False  # set by RelevanceAccumulator during an explain pass
        self._train_sums: Tensor | None = None  # (loss sum, correct count) of the epoch
        self._train_count = 0
        k = int(net.num_classes)
        self.val_acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=k, average="micro")
        # Evaluation losses as metrics (sums of loss x batch size and of batch sizes), so that
        # under DDP, where evaluation shards differ in length (prune.data.samplers), the epoch
        # value is the mean over all samples, as in one process. Lightning's own
        # ``sync_dist`` mean is not: on gloo it averages the ranks' integer sample counts with
        # truncation. "disable": no NaN check, which would cost a host sync per batch (a NaN
        # loss then shows as NaN).
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")

    # Attributes that Lightning (``_current_fx_name``, set twice around every hook call: about
    # 45 times a step) and our training step rebind all the time. They never hold a parameter,
    # buffer or module, so ``nn.Module.__setattr__``'s type checks (about 5 us each on CPU) can be
    # skipped for them: with a small model that is a tenth of the step.
    _PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_train_count", "_train_sums"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one dense input sample."""
        return tuple(self.net.in_shape)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the network for normalised images."""
        return self.net(x)

    def normalize(self, x: Tensor) -> Tensor:
        """Raw images (uint8 in [0, 255] or float in [0, 1]) -> normalised float32."""
        # x * (1 / (255 std)) - mean / std: one new tensor and two in-place passes, where
        # (x / 255 - mean) / std allocates three (on CPU each fresh batch-sized tensor costs
        # page faults, more than the arithmetic)
        scale = 1.0 / self.std
        if x.dtype == torch.uint8:
            scale = scale / 255.0
        out = x * scale if x.dtype == scale.dtype else x.to(scale.dtype).mul_(scale)
        return out.sub_(self.mean / self.std)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int):
        """Our loaders yield an ``(images, labels)`` pair: move it directly (Lightning's general
        path walks any collection, which costs more than the copy itself on CPU)."""
        pair = type(batch) is tuple and len(batch) == 2
        if not (pair and all(isinstance(t, Tensor) for t in batch)):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        return tuple(t.to(device, non_blocking=True) for t in batch)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise on the device: batches travel as uint8 (4x less to copy)."""
        x, y = batch
        return self.normalize(x), y

    def _step(
        self,
        batch: tuple[Tensor, Tensor],
        stage: str,
        metric: MulticlassAccuracy,
        mean_loss: MeanMetric,
    ) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        # update() only: calling the metric would also compute a per-batch value nobody reads
        metric.update(logits.detach(), y)
        mean_loss.update(loss.detach(), weight=len(y))
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        # Lightning's per-call cost of ``self.log`` (about 2 ms on CPU: it re-places its result
        # store on the device each call) and of a torchmetrics update exceed a small model's
        # whole step. So the epoch's loss and accuracy are two sums kept on the device and
        # logged once at the epoch's end, and the step loss is logged only on the steps the
        # logger writes anyway (``trainer.log_every_n_steps``).
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        if self._train_sums is None:
            self._train_sums = torch.zeros(2, device=loss.device)
        sums = self._train_sums  # in-place on detached values: no autograd, no new tensor
        sums[0].add_(loss.detach(), alpha=len(y))
        sums[1].add_((logits.detach().argmax(1) == y).sum())
        self._train_count += len(y)
        if batch_idx % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        if not self.automatic_optimization:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
        return loss

    @property
    def automatic_optimization(self) -> bool:
        """False (the step is written out in :meth:`training_step`) unless the Trainer asks for
        gradient clipping or accumulation, which Lightning's automatic loop implements.

        The step is the same either way (zero grad, backward, optimizer step; Lightning's
        backward and step hooks and DDP's gradient sync still run), but the automatic loop's
        closure and extra hooks cost about 0.35 ms a step on CPU: 15% of a LeNet-300-100 step.
        """
        trainer = self._trainer
        return trainer is not None and (
            trainer.gradient_clip_val is not None or trainer.accumulate_grad_batches != 1
        )

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_count = None, 0

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization and (scheduler := self.lr_schedulers()) is not None:
            scheduler.step()  # per epoch, as Lightning's default interval does
        if self._train_sums is None:  # no training batch ran this epoch
            return
        loss, acc = (self._train_sums / self._train_count).unbind()
        # sync_dist averages the ranks' means (DistributedSampler gives equal shard sizes)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log("train/acc", acc, sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if self.explain_only:  # a RelevanceAccumulator already ran the batch: skip the loss
            return
        self._step(batch, "val", self.val_acc, self.val_loss)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc, self.test_loss)

    def configure_optimizers(self) -> Any:
        # Called again by every new Trainer.fit, so pruned (new) parameters get a new optimizer.
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer=optimizer)}

    # -- pruning -------------------------------------------------------------------------------
    def apply_plan(self, plan: PruningPlan) -> None:
        """Cut the network to ``plan`` (relative to the dense model) and remember it."""
        from prune.pruning.surgery import apply_plan

        example = torch.zeros(1, *self.in_shape, device=self.device)
        apply_plan(self.net, plan, example)
        self.plan = plan

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pruning_plan"] = None if self.plan is None else self.plan.to_dict()
        checkpoint["run_config"] = self.run_config
        # saved when an epoch ends, which is the state the next epoch starts from
        checkpoint["rng_states"] = rng.collect()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A fit that continues from a checkpoint draws the numbers (data order, dropout) that
        # the interrupted fit would have drawn; testing a checkpoint leaves them alone.
        trainer = self._trainer
        fitting = trainer is not None and trainer.state.fn == "fit"
        if fitting and checkpoint.get("rng_states") is not None:
            rng.restore(checkpoint["rng_states"])
        # Runs before the weights are loaded: re-cut a dense model to the checkpoint's plan.
        stored = checkpoint.get("pruning_plan")
        if stored is None:
            if self.plan is not None:
                raise ValueError("checkpoint holds a dense model but this module is already pruned")
            return
        plan = PruningPlan.from_dict(stored)
        if self.plan is None:
            self.apply_plan(plan)
        elif self.plan != plan:
            raise ValueError("checkpoint was pruned with a different plan than this module")
