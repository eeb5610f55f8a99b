"""LRP rules in their reference form: each one the formula of its paper (:mod:`.base`)."""

from prune.lrp.rules.abslrp import AbsBatchNorm, AbsLinear, AbsNorm, AbsSum
from prune.lrp.rules.base import Layer, LinearRule, Op, Rule
from prune.lrp.rules.free import Norm, Pass
from prune.lrp.rules.input import Flat, WSquare, ZBox
from prune.lrp.rules.linear import LRP0, AlphaBeta, Epsilon, Gamma, ZPlus

__all__ = [
    "LRP0",
    "AbsBatchNorm",
    "AbsLinear",
    "AbsNorm",
    "AbsSum",
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "Layer",
    "LinearRule",
    "Norm",
    "Op",
    "Pass",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
]
