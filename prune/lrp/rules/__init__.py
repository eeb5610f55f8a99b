"""LRP rules in their reference form: each one the formula of its paper (:mod:`.base`)."""

from prune.lrp.rules.abslrp import (
    AbsActivation,
    AbsBatchNorm,
    AbsLayerNorm,
    AbsLinear,
    AbsNorm,
    AbsProduct,
    AbsSoftmax,
    AbsSum,
)
from prune.lrp.rules.base import Layer, LinearRule, Op, Rule
from prune.lrp.rules.free import Norm, Pass
from prune.lrp.rules.gate import Gate
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
    "AbsActivation",
    "AbsBatchNorm",
    "AbsLayerNorm",
    "AbsLinear",
    "AbsNorm",
    "AbsProduct",
    "AbsSoftmax",
    "AbsSum",
    "AlphaBeta",
    "Attention",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gate",
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
