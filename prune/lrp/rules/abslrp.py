"""absLRP: relative absolute magnitude propagation (Vukadin et al. 2024, ACM TIST 15(3):47).

Each layer ``y = f(x)`` also runs as its absolute twin ``f_abs(|x|)`` with ``|W|, |b|``; the
relevance of input ``i`` is ``x_i * d(y + y_abs)/dx_i^T (R / |y|)``, which for a linear layer is
``sum_j 2 max(x_i w_ij, 0) R_j / |y_j|``: dividing by the *absolute* output keeps the relative
magnitudes of neurons with outputs of different size. After every layer the relevance is
rescaled to unit L1 norm per sample; at a residual sum each branch is rescaled on its own.
BatchNorm is a layer of its own (merging it changes the result).

The contrastive map (the paper's default) is the map of the target class minus the map of all
other classes, each from a unit-sum output relevance: see :class:`prune.lrp.composites.AbsLRP`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.canonizers import batchnorm_affine
from prune.lrp.rules.base import Layer, LinearRule, Op, Rule, ratio


def unit_l1(relevance: Tensor) -> Tensor:
    """``relevance`` rescaled per sample so that ``sum |relevance| == 1``."""
    norm = relevance.flatten(1).abs().sum(1).clamp_min(1e-30)
    return relevance / norm.reshape(-1, *([1] * (relevance.dim() - 1)))


class AbsLinear(LinearRule):
    """absLRP for linear and conv layers: ``R_i ~ x_i (W + sign(x_i) |W|)^T (R / |y|)``, unit L1
    (``2 max(x_i w_ij, 0)`` per contribution)."""

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        c = ratio(relevance, layer(x).abs(), 0.0)  # R / |y|
        w = layer.weight
        return unit_l1(x * (layer.transpose(c, w) + x.sign() * layer.transpose(c, w.abs())))


class AbsBatchNorm(Rule):
    """absLRP for an eval-mode BatchNorm kept as a layer, ``y = x s + t`` per channel:
    ``R_i ~ x_i (s + sign(x_i) |s|) R_i / |y_i|``, unit L1."""

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        if layer.module.running_var is None:
            raise NotImplementedError(f"absLRP needs running statistics in {layer.module}")
        scale, _ = batchnorm_affine(layer.module, x)
        s = scale.reshape(1, -1, *([1] * (x.dim() - 2)))
        c = ratio(relevance, layer(x).abs(), 0.0)
        return unit_l1(x * c * (s + x.sign() * s.abs()))


class AbsNorm(Rule):
    """absLRP for average pooling (coefficients ``J >= 0``): ``R_i ~ x_i (1 + sign(x_i))
    J^T (R / |y|)``, unit L1."""

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            y = layer(leaf)
        (jt,) = torch.autograd.grad(y, leaf, ratio(relevance, y.detach().abs(), 0.0))
        return unit_l1(x * jt * (1 + x.sign()))


class AbsSum(Rule):
    """absLRP for residual sums ``a + b``: ``R_a ~ a (1 + sign(a)) R / |a + b|``, each branch
    rescaled to unit L1 on its own."""

    def relevance(self, layer: Op, *inputs: Tensor, relevance: Tensor) -> tuple[Tensor, ...]:
        c = ratio(relevance, layer(*inputs).abs(), 0.0)
        return tuple(unit_l1(t * (c * (1 + t.sign())).sum_to_size(t.shape)) for t in inputs)
