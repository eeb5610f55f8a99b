"""Kernels of the rules without weights (:mod:`prune.lrp.rules.free`): pass and the z-rule.

A ReLU with the pass rule folds in the rescale its input owes (:mod:`prune.lrp.fast.flow`); an
average pool or a sum with the z-rule runs natively and leaves its rescale owed.
"""

from __future__ import annotations

import math

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
    """Relevance passes unchanged: ``g_in = g * f(x) / x`` (0 where ``x == 0``)."""

    @staticmethod
    def forward(ctx, x, fn):
        y = fn(x)
        ctx.scale = divide_by_input(y, x)
        return y

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class _GeluPass(torch.autograd.Function):
    """Pass through GELU, ``g_in = g * gelu(x) / x``: for ``gelu(x) = x * Phi(x)`` the scale is
    ``Phi(x)`` itself (its tanh approximation for ``approximate="tanh"``), one op."""

    @staticmethod
    def forward(ctx, x, approximate):
        if approximate == "tanh":
            inner = (x + 0.044715 * x.pow(3)).mul_(math.sqrt(2 / math.pi))
            ctx.scale = inner.tanh_().add_(1).mul_(0.5)
        else:
            ctx.scale = torch.special.ndtr(x)
        return F.gelu(x, approximate=approximate)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


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
        if type(module) is nn.GELU:
            return _GeluPass.apply(x, module.approximate)
        forward, inplace = type(module).forward, getattr(module, "inplace", False) is True
        # out of place: the rescale needs the input, which its producer may have saved too
        return _PassFunction.apply(x, lambda t: forward(module, t.clone() if inplace else t))


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
