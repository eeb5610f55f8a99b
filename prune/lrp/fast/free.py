"""Kernels of the rules without weights (:mod:`prune.lrp.rules.free`): pass and the z-rule.

A ReLU with the pass rule folds in the rescale its input owes (:mod:`prune.lrp.fast.flow`); an
average pool or a sum with the z-rule runs natively and leaves its rescale owed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.lrp.fast.base import Kernel
from prune.lrp.fast.flow import fused_relu, self_ratio
from prune.lrp.fast.pooling import avg_pool
from prune.lrp.fast.registry import kernel
from prune.lrp.rules.base import divide_by_input
from prune.lrp.rules.free import Norm, Pass
from prune.lrp.state import RunState
from prune.lrp.types import HOMOGENEOUS_ACTIVATIONS


class _PassFunction(torch.autograd.Function):
    """Relevance passes unchanged: ``g_in = g * f(x) / x``, the scale ``scale_of(x, f(x))``."""

    @staticmethod
    def forward(ctx, x, fn, scale_of):
        y = fn(x)
        ctx.scale = scale_of(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None, None


def _over_input(x: Tensor, y: Tensor) -> Tensor:
    """``f(x) / x`` (0 where ``x == 0``)."""
    return divide_by_input(y, x)


def _gelu_scale(x: Tensor, y: Tensor) -> Tensor:
    """``gelu(x) / x`` in two cheap ops: the division, and ``Phi(0) = 1/2`` where ``x == 0``
    (``gelu(x) = x Phi(x)``, with ``Phi`` the normal CDF or its tanh approximation; evaluating
    ``Phi`` itself costs another ``erf``)."""
    return torch.div(y, x).nan_to_num_(0.5)


@kernel(Pass)
class PassKernel(Kernel):
    """Pass: the ordinary gradient of a ReLU (fused with an owed rescale) or leaky ReLU; for
    other activations a node that passes the relevance on. An in-place activation runs out of
    place; relevance on exactly-zero inputs of a non-homogeneous activation is absorbed."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward ``x`` through the elementwise ``module`` with the pass-through backward."""
        if isinstance(module, nn.ReLU):
            fused = fused_relu(x, run)
            return F.relu(x) if fused is None else fused
        if isinstance(module, nn.LeakyReLU):
            return F.leaky_relu(x, module.negative_slope)
        if isinstance(module, HOMOGENEOUS_ACTIVATIONS) or not x.requires_grad:
            return type(module).forward(module, x)
        forward, inplace = type(module).forward, getattr(module, "inplace", False) is True
        # out of place: the rescale needs the input, which its producer may have saved too
        fn = lambda t: forward(module, t.clone() if inplace else t)  # noqa: E731
        gelu = type(module) is nn.GELU
        return _PassFunction.apply(x, fn, _gelu_scale if gelu else _over_input)


class _SumFunction(torch.autograd.Function):
    """z-rule on ``a + b``: each summand gets ``a * R / stab(a + b)``."""

    @staticmethod
    def forward(ctx, a, b, epsilon, inplace):
        z = a.add_(b) if inplace else a + b
        if inplace:
            ctx.mark_dirty(a)
        ctx.scale = self_ratio(z, epsilon)
        ctx.shapes = (a.shape, b.shape if isinstance(b, Tensor) else None)
        return z

    @staticmethod
    def backward(ctx, grad):
        g = grad * ctx.scale
        del ctx.scale
        sa, sb = ctx.shapes
        return g.sum_to_size(sa), None if sb is None else g.sum_to_size(sb), None, None


@kernel(Norm)
class NormKernel(Kernel):
    """The z-rule: a native average pool or sum whose rescale ``z / stab(z)`` is owed."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward ``x`` through the parameter-free linear ``module`` with the z-rule backward."""
        y = avg_pool(module, x)
        if x.requires_grad:
            run.mark_pending(y, self.stabilizer)  # native gradient, rescale owed (flow.py)
        return y

    def op(
        self, name: str, args: tuple, kwargs: dict, inplace: bool, run: RunState
    ) -> Tensor | None:
        """``a + b`` (or ``a += b``) with the z-rule backward; None for other ops."""
        if name != "add" or len(args) != 2 or kwargs:
            return None
        a, b = args
        if inplace:
            return _SumFunction.apply(a, b, self.stabilizer, inplace)
        z = a + b
        run.mark_pending(z, self.stabilizer)
        return z
