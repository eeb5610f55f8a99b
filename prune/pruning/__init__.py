"""Pruning core in plain PyTorch + Torch-Pruning: plans, criteria, selection, surgery."""

from prune.pruning.groups import ChannelGroup, find_groups
from prune.pruning.input_front import InputCrop, InputSelect
from prune.pruning.plan import PruningPlan
from prune.pruning.pruner import Pruner
from prune.pruning.surgery import applied_plan, apply_plan

__all__ = [
    "ChannelGroup",
    "InputCrop",
    "InputSelect",
    "Pruner",
    "PruningPlan",
    "applied_plan",
    "apply_plan",
    "find_groups",
]
