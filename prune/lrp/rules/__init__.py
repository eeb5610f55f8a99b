"""LRP rules in their reference form: each one the formula of its paper (:mod:`.base`)."""

from prune.lrp.rules.abslrp import AbsBatchNorm, AbsLinear, AbsNorm, AbsSum
from prune.lrp.rules.base import Layer, LinearRule, Op, Rule
from prune.lrp.rules.free import Norm, Pass
from prune.lrp.rules.input import Flat, WSquare, ZBox
from prune.lrp.rules.linear import LRP0, AlphaBeta, Epsilon, Gamma, ZPlus
from prune.lrp.rules.transformer import (
    Attention,
    HeldConstant,
    LayerNormIdentity,
    SoftmaxTaylor,
    Uniform,
)

__all__ = [
    "LRP0",
    "AbsBatchNorm",
    "AbsLinear",
    "AbsNorm",
    "AbsSum",
    "AlphaBeta",
    "Attention",
    "Epsilon",
    "Flat",
    "Gamma",
    "HeldConstant",
    "Layer",
    "LayerNormIdentity",
    "LinearRule",
    "Norm",
    "Op",
    "Pass",
    "Rule",
    "SoftmaxTaylor",
    "Uniform",
    "WSquare",
    "ZBox",
    "ZPlus",
]
