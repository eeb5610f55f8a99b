"""LRP rules for linear and convolutional layers, in their reference form.

Each ``relevance`` is the rule's formula for inputs of either sign: ``x+`` and ``x-`` are the
positive and negative parts of the input, ``W+`` and ``W-`` those of the weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.rules.base import Layer, LinearRule, check_nonneg, negative, positive, ratio


class LRP0(LinearRule):
    """LRP-0 (Bach et al. 2015; Montavon et al. 2019, eq. 3): ``R_i = x_i sum_j w_ij R_j / z_j``.

    Upper layers. Without biases it conserves relevance exactly and, on ReLU networks, equals
    gradient times input.
    """

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        return x * layer.transpose(ratio(relevance, layer(x), 0.0), layer.weight)


class Epsilon(LinearRule):
    """LRP-epsilon (Bach et al. 2015; Montavon et al. 2019, eq. 4).

    ``R_i = x_i sum_j w_ij R_j / (z_j + eps sign(z_j))``.

    Typically used in middle and upper layers. ``epsilon`` absorbs the relevance of weak or
    contradictory outputs; biases absorb their share.

    Args:
        epsilon: stabiliser added to ``z`` with its sign, >= 0.
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = check_nonneg("epsilon", epsilon)

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        return x * layer.transpose(ratio(relevance, layer(x), self.epsilon), layer.weight)


class ZPlus(LinearRule):
    """LRP-z+ (Montavon et al. 2017, deep Taylor decomposition): only positive contributions.

    ``R_i = sum_j (x+_i w+_ij + x-_i w-_ij) R_j / sum_i(...)``, the bias's positive part in the
    denominator. Equals alpha-beta with ``alpha=1, beta=0``; for inputs of either sign the
    negative inputs use the negative weights (Zennit's generalisation). Typically used in
    convolutional layers.

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        z = layer.forward(xp, wp, positive(layer.bias)) + layer.forward(xn, wn)
        s = ratio(relevance, z, self.stabilizer)
        return xp * layer.transpose(s, wp) + xn * layer.transpose(s, wn)


class AlphaBeta(LinearRule):
    """LRP-alpha-beta (Bach et al. 2015; Montavon et al. 2019, eq. 5).

    ``R_i = sum_j (alpha z+_ij / z+_j - beta z-_ij / z-_j) R_j``: positive and negative
    contributions ``z_ij = x_i w_ij`` are normalised separately and weighted. Conserves relevance
    when ``alpha - beta = 1`` (required). Typically ``alpha=2, beta=1`` in convolutional layers.

    Args:
        alpha: weight of positive contributions, >= 0.
        beta: weight of negative contributions, >= 0, with ``alpha - beta == 1``.
        stabilizer: added to each denominator with its sign, >= 0.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"alpha - beta must equal 1, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        bp, bn = positive(layer.bias), negative(layer.bias)
        zp = layer.forward(xp, wp, bp) + layer.forward(xn, wn)  # positive contributions
        zn = layer.forward(xp, wn, bn) + layer.forward(xn, wp)  # negative contributions
        sp = ratio(relevance, zp, self.stabilizer)
        sn = ratio(relevance, zn, self.stabilizer)
        rp = xp * layer.transpose(sp, wp) + xn * layer.transpose(sp, wn)
        rn = xp * layer.transpose(sn, wn) + xn * layer.transpose(sn, wp)
        return self.alpha * rp - self.beta * rn


class Gamma(LinearRule):
    """LRP-gamma (Montavon et al. 2019, eq. 6), generalised to inputs of either sign (Andeol 2021).

    Outputs with ``z > 0`` spread relevance over the contributions of ``W + gamma W+`` (those of
    the output's sign are favoured), outputs with ``z < 0`` over those of ``W + gamma W-``; for a
    negative input the roles of the two weights swap. Typically used in lower convolutional
    layers; ``gamma -> 0`` gives LRP-0, ``gamma -> inf`` z+.

    Args:
        gamma: weight of the favoured contributions, >= 0.
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        self.gamma = check_nonneg("gamma", gamma)
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        g, w, b = self.gamma, layer.weight, layer.bias
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wa, wb = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        ba = None if b is None else b + g * b.clamp(min=0)
        bb = None if b is None else b + g * b.clamp(max=0)
        z = layer(x)
        za = layer.forward(xp, wa, ba) + layer.forward(xn, wb)  # normaliser where z > 0
        zb = layer.forward(xp, wb, bb) + layer.forward(xn, wa)  # normaliser where z < 0
        zero = torch.zeros_like(relevance)
        sa = torch.where(z > 0, ratio(relevance, za, self.stabilizer), zero)
        sb = torch.where(z < 0, ratio(relevance, zb, self.stabilizer), zero)
        pos = layer.transpose(sa, wa) + layer.transpose(sb, wb)
        neg = layer.transpose(sa, wb) + layer.transpose(sb, wa)
        return xp * pos + xn * neg
