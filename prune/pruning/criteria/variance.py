"""Variance criterion: keep the input elements that vary most over the data."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.pruning.criteria.base import Batches, Criterion


class VarianceCriterion(Criterion):
    """Per-element variance of the inputs over the batches (model free).

    A strong baseline for input pruning: an MNIST pixel that is always black carries no
    information (the docs' results page compares it with LRP and random pixels).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"batches"})
    targets: ClassVar[frozenset[str]] = frozenset({"inputs"})

    def input_scores(self, model: nn.Module, example_input: Tensor, batches: Batches) -> Tensor:
        """Population variance per element, shaped like one sample."""
        count, total, total_sq = 0, None, None
        for x, _y in batches:
            x = x.detach().to(torch.float64)
            total = x.sum(0) if total is None else total + x.sum(0)
            total_sq = (x * x).sum(0) if total_sq is None else total_sq + (x * x).sum(0)
            count += x.shape[0]
        if count == 0:
            raise ValueError("VarianceCriterion got no samples in batches")
        mean = total / count
        return (total_sq / count - mean * mean).clamp_min(0.0)
