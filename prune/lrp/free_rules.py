"""Rules for layers without parameters: pass for activations, the z-rule for pools and sums."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.lrp.core import (
    HOMOGENEOUS_ACTIVATIONS,
    Rule,
    check_nonneg,
    divide_by_input,
    ratio,
)
from prune.lrp.flow import fused_relu
from prune.lrp.pooling import avg_pool
from prune.lrp.state import RunState


class _PassFunction(torch.autograd.Function):
    """Relevance passes unchanged: ``g_in = g * f(x) / x`` (0 where ``x == 0``)."""

    @staticmethod
    def forward(ctx, x, fn):
        y = fn(x)
        ctx.scale = divide_by_input(y, x)
        return y

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class Pass(Rule):
    """Pass-through: the layer hands its output relevance unchanged to its input.

    For elementwise layers (activations) and an unmerged BatchNorm (Zennit's ``Pass``). For ReLU
    and leaky ReLU this is the ordinary gradient and costs nothing extra; an in-place activation
    runs out of place. For other activations relevance on exactly-zero inputs is absorbed.
    """

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward ``x`` through the elementwise ``module`` with the pass-through backward."""
        if isinstance(module, nn.ReLU):
            fused = fused_relu(x, run)
            return F.relu(x) if fused is None else fused
        if isinstance(module, nn.LeakyReLU):
            return F.leaky_relu(x, module.negative_slope)
        if isinstance(module, HOMOGENEOUS_ACTIVATIONS) or not x.requires_grad:
            return type(module).forward(module, x)
        return _PassFunction.apply(x, lambda t: type(module).forward(module, t))


class _SumFunction(torch.autograd.Function):
    """z-rule on ``a + b``: each summand gets ``a * R / stab(a + b)``."""

    @staticmethod
    def forward(ctx, a, b, epsilon, inplace):
        z = a.add_(b) if inplace else a + b
        if inplace:
            ctx.mark_dirty(a)
        ctx.scale = ratio(z, z, epsilon)
        ctx.shapes = (a.shape, b.shape if isinstance(b, Tensor) else None)
        return z

    @staticmethod
    def backward(ctx, grad):
        g = grad * ctx.scale
        del ctx.scale
        sa, sb = ctx.shapes
        return g.sum_to_size(sa), None if sb is None else g.sum_to_size(sb), None, None


class Norm(Rule):
    """The z-rule without parameters (Zennit's ``Norm``) for average pooling and elementwise sums.

    Each input gets ``x_i * dy/dx_i * R / stab(y)``: an average pool shares relevance in
    proportion to the pooled values, and a residual sum ``a + b`` in proportion to ``a`` and
    ``b``. Conserves relevance up to the stabiliser.

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward ``x`` through the parameter-free linear ``module`` with the z-rule backward."""
        y = avg_pool(module, x)
        if x.requires_grad:
            run.mark_pending(y, self.stabilizer)  # native gradient, rescale owed (flow.py)
        return y

    def add(
        self, a: Tensor, b: Tensor | float, inplace: bool = False, run: RunState | None = None
    ) -> Tensor:
        """``a + b`` (or ``a += b``) with the z-rule backward."""
        if inplace or run is None:
            return _SumFunction.apply(a, b, self.stabilizer, inplace)
        z = a + b
        run.mark_pending(z, self.stabilizer)
        return z
