"""Few-shot pruning without fine-tuning as one function of the composite and the pruner: the
accuracy-vs-ratio curve of ``experiment/mnist_vit_fewshot`` and its area, on any split."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prune.callbacks.relevance import explain_trainer
from prune.lrp import Composite, RelevanceStats
from prune.module import ClassifierModule
from prune.pruning.pruner import Pruner

Batches = Sequence[tuple[Tensor, Tensor]]
"""``(images, labels)`` batches of raw images (uint8, or float in [0, 1]), on any device."""

Explain = Callable[[ClassifierModule, Composite, list[str]], RelevanceStats]
"""``explain(module, composite, record)``: the relevance statistics of one explain pass."""


@dataclass
class Curve:
    """Accuracy after each pruning step: ``ratios[0] == 0`` is the dense model."""

    ratios: list[float]
    accuracies: list[float]

    @property
    def area(self) -> float:
        """Area under accuracy vs ratio (trapezoid), as ``prune/auc_pruned`` in results.json."""
        xs, ys = self.ratios, self.accuracies
        return sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))

    def to_dict(self) -> dict[str, list[float]]:
        """``{"ratio": [...], "acc": [...]}`` for JSON."""
        return {"ratio": list(self.ratios), "acc": list(self.accuracies)}


def batches_of(
    x: Tensor, y: Tensor, batch_size: int, limit: int | None = None
) -> list[tuple[Tensor, Tensor]]:
    """``(x, y)`` cut into batches of ``batch_size``, the first ``limit`` samples (None: all)."""
    n = len(y) if limit is None else min(int(limit), len(y))
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


@torch.no_grad()
def accuracy(module: ClassifierModule, batches: Batches, device: torch.device) -> float:
    """Fraction of ``batches`` that ``module`` classifies right (the module is moved there)."""
    module.to(device).eval()
    correct, total = 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        correct += int((module(module.normalize(x)).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def explain_with(accumulator: Callable[..., Any], reference: Iterable, accelerator: str) -> Explain:
    """An :data:`Explain` that runs the pipeline's explain pass over ``reference``.

    Args:
        accumulator: ``accumulator(composite, record=..., num_classes=...)`` builds a
            :class:`~prune.callbacks.relevance.RelevanceAccumulator` (the run's ``relevance``
            partial: which class is explained and from which output relevance).
        reference: the reference images, a loader of raw ``(x, y)`` batches.
        accelerator: ``"cpu"`` or ``"gpu"``.
    """

    def explain(module: ClassifierModule, composite: Composite, record: list[str]) -> Any:
        acc = accumulator(composite, record=record, num_classes=module.net.num_classes)
        explain_trainer(acc, accelerator).validate(module, dataloaders=reference, verbose=False)
        return acc.stats

    return explain


def pruning_curve(
    dense: ClassifierModule,
    pruner: Pruner,
    composite: Composite,
    explain: Explain,
    evaluation: Batches,
    device: torch.device,
) -> Curve:
    """Prune a copy of ``dense`` for ``pruner.rounds`` steps without fine-tuning, explaining it
    with ``composite`` before each step; its accuracy on ``evaluation`` after each.

    The steps are those of a training run with ``retrain.max_epochs=0``: explain the current
    model, score, select the cumulative plan of round k, cut. ``dense`` is left as it is.
    """
    module = copy.deepcopy(dense)
    example = torch.zeros(1, *module.in_shape)
    total = pruner.total(module.net, example)
    curve = Curve([0.0], [accuracy(module, evaluation, device)])
    for k in range(1, pruner.rounds + 1):
        stats = None
        if "stats" in pruner.needs:
            stats = explain(module, composite, pruner.record_names(module.net, example))
        plan = pruner.plan(
            module.net, example, stats=stats, round_index=k, current_plan=module.plan
        )
        module.apply_plan(plan)
        curve.ratios.append(pruner.ratio_at(k, total))
        curve.accuracies.append(accuracy(module, evaluation, device))
    return curve
