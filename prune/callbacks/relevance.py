"""RelevanceAccumulator: LRP over a dataset inside a Lightning loop, summed into RelevanceStats."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.strategies import Strategy

from prune import lrp
from prune.checks import Check, boolean, choice
from prune.lrp import RelevanceStats
from prune.lrp.stats import unit_dim

TARGETS = ("label", "prediction")


class NonFiniteRelevanceError(ValueError):
    """Relevance became NaN or infinite; the message names the layers, nearest the output first."""


def check_finite(stats: RelevanceStats) -> None:
    """Raise :class:`NonFiniteRelevanceError` if any sum in ``stats`` is NaN or infinite.

    The stats are sums, and NaN or inf in any sample survives summation (NaN + x = NaN,
    inf - inf = NaN), so one check of the (reduced) sums after the pass finds a non-finite value
    in any batch on any rank, without a host synchronisation per batch.
    """
    bad = [
        f"{name!r} ({int((~torch.isfinite(t)).sum())} of {t.numel()} units)"
        for name, t in reversed(list(stats.channels_signed.items()))
        if not bool(torch.isfinite(t).all() & torch.isfinite(stats.channels[name]).all())
    ]
    if stats.input is not None and not bool(torch.isfinite(stats.input_abs).all()):
        bad.append(f"the input ({int((~torch.isfinite(stats.input_abs)).sum())} elements)")
    if bad:
        raise NonFiniteRelevanceError(
            "relevance is NaN or infinite at " + ", ".join(bad) + " (nearest the output first; "
            "the first one is where it started): check the model's weights and inputs for "
            "NaN/inf, or use a larger lrp.epsilon / lrp.stabilizer; nothing was pruned"
        )


def reduce_stats(local: RelevanceStats, strategy: Strategy, device: torch.device) -> RelevanceStats:
    """Sum every rank's ``local`` stats over the ranks (``strategy.reduce``, one call per tensor).

    Every rank must make the same reduce calls in the same order, or the ranks wait on each
    other forever. The sums are created lazily at a rank's first batch, so a rank that got no
    batch has none; it then takes part with zeros shaped like the sums of a rank that has them
    (broadcast from there as data-free ``meta`` tensors). One small reduce first finds out
    whether that is needed.

    Args:
        local: this rank's sums.
        strategy: the Trainer's strategy (a single-device one returns its input unchanged).
        device: where this rank's zeros are made (the device the other ranks' sums are on).

    Returns:
        The reduced sums, the same on every rank; empty if no rank saw a sample.
    """
    rank = strategy.global_rank
    has_sums = local.class_counts is not None
    # (highest rank with sums, or -1; 1 if any rank has none): one reduce with "max"
    flags = torch.tensor([rank if has_sums else -1, int(not has_sums)], device=device)
    source, some_missing = strategy.reduce(flags, reduce_op="max").tolist()
    if source < 0:  # no rank saw a sample: nothing to reduce
        return local
    if some_missing:
        meta = local.apply(lambda t: torch.empty_like(t, device="meta")) if has_sums else None
        like = strategy.broadcast(meta if rank == source else None, src=source)
        if not has_sums:
            local = like.apply(lambda t: torch.zeros_like(t, device=device))
    return local.apply(lambda t: strategy.reduce(t, reduce_op="sum"))


OUTPUTS = ("logit", "one", "softmax", "margin", "log_probability")


class RelevanceAccumulator(L.Callback):
    """Explain every batch of a validation loop and accumulate dataset-level relevance.

    Use it with ``Trainer(inference_mode=False).validate(module, dataloaders=...)``: LRP needs
    gradients, which ``validate`` switches off by default. Each batch is explained on the
    model's device, in ``eval()`` mode, with one batched backward pass; the sums stay on the
    device until the end of the loop, where they are reduced once across DDP ranks
    (:func:`reduce_stats`) and moved to the CPU as float64. Under DDP the ranks may see
    different numbers of batches (evaluation loaders do not repeat samples to even the shards
    out, see ``prune.data.samplers``): nothing here synchronises per batch.

    A run's ``relevance`` config names this class as a partial (``_partial_: true``, with
    ``target`` and ``output``); each explain pass adds the composite, ``record`` and
    ``num_classes``.

    Args:
        composite: LRP composite (instance or registered name) of the ``prune.lrp.Explainer``.
        record: qualified names (relative to ``module.net``) of the modules whose output
            relevance is kept per unit.
        num_classes: number of classes (for the per-class sums).
        target: which class each sample is explained for: its ``label`` or the model's
            ``prediction``.
        output: initial relevance at the output: the explained ``logit`` value itself (relevance
            then sums to the logit), ``one`` at the explained class, ``softmax``: the gradient
            of the class's softmax probability over all logits (SGLRP, Iwana et al. 2019), which
            also sends negative relevance from the classes that compete with it, or ``margin``:
            the logit minus the strongest other logit (relevance sums to the margin; units that
            tell the class from the one it is most confused with score high), or
            ``log_probability``: the class's log-probability linearised at the logits
            (``R_k = z_k (delta_kt - p_k)``; samples near a decision boundary weigh most).
        input_relevance: also accumulate input relevance.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "target": choice(*TARGETS),
        "output": choice(*OUTPUTS),
        "input_relevance": boolean(),
    }

    def __init__(
        self,
        composite: Any,
        record: Sequence[str],
        num_classes: int,
        target: str = "label",
        output: str = "logit",
        input_relevance: bool = True,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"relevance.target must be one of {TARGETS}, got {target!r}")
        if output not in OUTPUTS:
            raise ValueError(f"relevance.output must be one of {OUTPUTS}, got {output!r}")
        self.composite, self.record = composite, list(record)
        self.num_classes, self.target, self.output = int(num_classes), target, output
        self.input_relevance = input_relevance
        self.stats = RelevanceStats(self.num_classes)
        self._local = RelevanceStats(self.num_classes)
        self._explainer: lrp.Explainer | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._local = RelevanceStats(self.num_classes)
        self._explainer = None  # built at the first batch, for this pass over the data
        if hasattr(pl_module, "explain_only"):  # the LRP pass has the logits: no second forward
            pl_module.explain_only = True

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        x, y = batch
        net = pl_module.net
        if self.target == "prediction":
            with torch.no_grad():
                y = net(x).argmax(1)
        # Class indices explain the logit itself (relevance sums to f_c(x)); a one-hot float
        # target starts from relevance 1 at the class instead.
        if self.output == "logit":
            target = y
        elif self.output == "softmax":
            target = partial(lrp.softmax_gradient, labels=y)
        elif self.output == "margin":
            target = partial(lrp.logit_margin, labels=y)
        elif self.output == "log_probability":
            target = partial(lrp.log_probability, labels=y)
        else:
            target = torch.nn.functional.one_hot(y, self.num_classes).to(x.dtype)
        if self._explainer is None or self._explainer.model is not net:
            # layers mapped to rules once per pass over the data, not per batch
            self._explainer = lrp.Explainer(net, self.composite, self.record)
            # the units of a linear layer on tokens (B, T, D) lie on the last axis
            self._local.unit_dims = {n: unit_dim(net.get_submodule(n)) for n in self.record}
        res = self._explainer(x, target)
        inputs, outputs = res.input, res.output
        self._local.update(inputs if self.input_relevance else None, outputs, y, consume=True)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exc: BaseException
    ) -> None:
        self._explainer = None
        if hasattr(pl_module, "explain_only"):
            pl_module.explain_only = False

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._explainer = None  # the model may be pruned before the next pass
        if hasattr(pl_module, "explain_only"):
            pl_module.explain_only = False
        self.stats = reduce_stats(self._local, trainer.strategy, pl_module.device).cpu()
        check_finite(self.stats)  # never hand NaN/inf to a pruner


def explain_trainer(accumulator: RelevanceAccumulator, accelerator: str = "auto") -> L.Trainer:
    """A bare Trainer for one explain pass outside the pipeline: one device, grad mode (LRP
    needs gradients; ``validate`` defaults to inference mode), no logger, checkpoints, progress
    bar or summary. ``explain_trainer(acc).validate(module, dataloaders=loader)`` fills
    ``acc.stats``. (The pipeline builds its Trainer from the run's config instead.)"""
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,
        callbacks=[accumulator],
    )
