"""Pruning criteria, one per file; each returns scores where higher means keep."""

from prune.pruning.criteria._backprop import BackpropCriterion
from prune.pruning.criteria.attention import AttentionCriterion
from prune.pruning.criteria.base import Criterion
from prune.pruning.criteria.gradient import GradientCriterion
from prune.pruning.criteria.gradient_x_input import GradientXInputCriterion
from prune.pruning.criteria.lrp import LRPCriterion
from prune.pruning.criteria.magnitude import MagnitudeCriterion
from prune.pruning.criteria.random import RandomCriterion
from prune.pruning.criteria.taylor import TaylorCriterion
from prune.pruning.criteria.variance import VarianceCriterion

__all__ = [
    "AttentionCriterion",
    "BackpropCriterion",
    "Criterion",
    "GradientCriterion",
    "GradientXInputCriterion",
    "LRPCriterion",
    "MagnitudeCriterion",
    "RandomCriterion",
    "TaylorCriterion",
    "VarianceCriterion",
]
