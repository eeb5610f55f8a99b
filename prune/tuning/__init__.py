"""Tuning the LRP composite for pruning: a rule per layer group and the criterion's |R| against
signed R, searched with Optuna for the best few-shot pruning curve (``tune.py``)."""

from prune.tuning.composite import GroupRules
from prune.tuning.fewshot import Curve, pruning_curve
from prune.tuning.layers import groups_before, layer_groups
from prune.tuning.search import TrialRecord, best_of, search
from prune.tuning.space import RULES, SearchSpace

__all__ = [
    "RULES",
    "Curve",
    "GroupRules",
    "SearchSpace",
    "TrialRecord",
    "best_of",
    "groups_before",
    "layer_groups",
    "pruning_curve",
    "search",
]
