"""Rules for layers and functional ops without weights: pass-through and the z-rule."""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.rules.base import Op, Rule, check_nonneg, ratio


class Pass(Rule):
    """Pass-through: an elementwise layer hands its output relevance unchanged to its input.

    For activations (ReLU, GELU, ...) and an unmerged BatchNorm (Zennit's ``Pass``); the
    identity rule of AttnLRP for the non-linearities of a transformer.
    """

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        return relevance


class Norm(Rule):
    """The z-rule for maps without weights (Zennit's ``Norm``): average pools, sums, means.

    For ``y = f(x_1, ..., x_n)`` linear in its inputs, each input gets
    ``R_i = x_i * J_i^T (R / stab(y))``: an average pool shares relevance in proportion to the
    pooled values, a residual sum ``a + b`` in proportion to ``a`` and ``b``. Conserves
    relevance up to the stabiliser and any constant term.

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def relevance(self, layer: Op, *inputs: Tensor, relevance: Tensor) -> tuple[Tensor, ...]:
        with torch.enable_grad():
            xs = [x.detach().requires_grad_() for x in inputs]
            y = layer(*xs)
        s = ratio(relevance, y.detach(), self.stabilizer)
        grads = torch.autograd.grad(y, xs, s)  # J_i^T s
        return tuple(x * g for x, g in zip(inputs, grads, strict=True))
