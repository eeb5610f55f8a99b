"""Gradient criterion: how strongly the loss reacts to each unit's output."""

from __future__ import annotations

from torch import Tensor

from prune.pruning.criteria._backprop import BackpropCriterion, per_unit


class GradientCriterion(BackpropCriterion):
    """Mean |dL/da| of each unit's output over positions and samples.

    A baseline of Yeom et al. 2021: it measures sensitivity, not
    contribution, so a unit that is always zero can still score high.

    Args:
        normalize: divide each layer's scores by their L1 norm.
    """

    @staticmethod
    def term(activation: Tensor, gradient: Tensor) -> Tensor:
        """|dL/da| averaged over positions."""
        return per_unit(gradient.abs())
