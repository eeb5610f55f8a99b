"""Kernels of the absLRP rules (:mod:`prune.lrp.rules.abslrp`).

In the gradient form of :mod:`prune.lrp.fast.base` the incoming ``R / |y|`` is
``sign(y) * g``: the sign of each output is all a kernel keeps of it, as int8.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.lrp.canonizers import batchnorm_affine
from prune.lrp.fast.base import Kernel, LinearKernel
from prune.lrp.fast.pooling import avg_pool
from prune.lrp.fast.registry import kernel
from prune.lrp.rules.abslrp import AbsBatchNorm, AbsLinear, AbsNorm, AbsSum
from prune.lrp.rules.base import nonnegative
from prune.lrp.state import RunState


def _sign(t: Tensor) -> Tensor:
    """``sign(t)`` as int8, kept for the backward pass at a quarter of a float32 copy."""
    return torch.sign(t).to(torch.int8)


def _unit_l1(relevance: Tensor, grad_in: Tensor, root: bool) -> Tensor:
    """Rescale per sample so that ``sum |relevance| == 1``; return relevance (root) or gradient."""
    # abs().sum(), not linalg.vector_norm(ord=1): the reduction is much slower on the CPU
    norm = relevance.flatten(1).abs().sum(1).clamp_min_(1e-30)
    norm = norm.reshape(-1, *([1] * (relevance.dim() - 1)))
    return relevance / norm if root else grad_in / norm


#: weight elements per temporary modified copy in a dense layer's backward (16 MiB in float32)
_CHUNK = 1 << 22


def _twin_product(op, c: Tensor, weight: Tensor, like: Tensor, nonneg: bool) -> Tensor:
    """``W_twin^T c`` with ``W_twin = 2 W+`` (nonnegative inputs) or ``|W|``.

    The modified weight is built in the backward pass, never stored with the graph; a large
    dense layer's is built a slice of output units at a time, so no full copy of it is held
    (torchvision's VGG classifier has 100 M weights: a copy is 400 MiB).
    """

    def twin(w: Tensor) -> Tensor:
        return 2 * w.clamp(min=0) if nonneg else w.abs()

    if op.is_conv or weight.numel() <= _CHUNK:
        return op.transpose(c, twin(weight), like)
    rows = max(1, _CHUNK // weight.shape[1])
    out = c[..., :rows] @ twin(weight[:rows])
    for i in range(rows, weight.shape[0], rows):
        out.add_(c[..., i : i + rows] @ twin(weight[i : i + rows]))
    return out


@kernel(AbsLinear)
class AbsLinearKernel(LinearKernel):
    """absLRP on a linear or conv layer: one custom node, the twin weights built in the backward."""

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        return z, (_sign(z), weight, x, nonnegative(x))

    def backward_impl(self, op, saved, grad, root, like):
        _, weight, x, nonneg = saved
        c = grad  # R / |y|: arrives scaled by sign(y) (see LinearKernel.output_scale)
        twin = _twin_product(op, c, weight, like, nonneg)
        # W + sign(x)|W|: = 2 W+ where x > 0 (nonnegative inputs), else both products
        grad_in = twin if nonneg else op.transpose(c, weight, like) + x.sign() * twin
        return _unit_l1(x * grad_in, grad_in, root)


class _AbsDiagonal(torch.autograd.Function):
    """absLRP on an elementwise affine map ``y = x * scale + shift`` (eval-mode BatchNorm)."""

    @staticmethod
    def forward(ctx, x, scale, shift, root):
        y = x * scale + shift
        ctx.x, ctx.scale, ctx.sign_y, ctx.root = x, scale, _sign(y), root
        return y

    @staticmethod
    def backward(ctx, grad):
        x, scale = ctx.x, ctx.scale
        grad_in = grad * ctx.sign_y * (scale + x.sign() * scale.abs())
        return _unit_l1(x * grad_in, grad_in, ctx.root), None, None, None


@kernel(AbsBatchNorm)
class AbsBatchNormKernel(Kernel):
    """absLRP on an eval-mode BatchNorm: one elementwise custom node."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward through the BatchNorm with the absolute rule's backward."""
        if module.running_var is None:
            raise NotImplementedError(f"absLRP needs running statistics in BatchNorm {module}")
        scale, shift = batchnorm_affine(module, x)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return _AbsDiagonal.apply(x, scale.reshape(shape), shift.reshape(shape), run.is_root(x))


class _AbsPool(torch.autograd.Function):
    """absLRP on a parameter-free linear map with nonnegative coefficients (average pooling)."""

    @staticmethod
    def forward(ctx, x, fn, root):
        y = fn(x)
        ctx.x, ctx.fn, ctx.sign_y, ctx.root = x, fn, _sign(y), root
        return y

    @staticmethod
    def backward(ctx, grad):
        with torch.enable_grad():
            x = ctx.x.detach().requires_grad_()
            (jt,) = torch.autograd.grad(ctx.fn(x), x, grad * ctx.sign_y)
        grad_in = jt * (1 + ctx.x.sign())  # J + sign(x)|J| with J >= 0
        return _unit_l1(ctx.x * grad_in, grad_in, ctx.root), None, None


@kernel(AbsNorm)
class AbsNormKernel(Kernel):
    """absLRP on an average pool: one custom node with the pool's own gradient."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward through the pool with the absolute rule's backward."""
        return _AbsPool.apply(x, lambda t: avg_pool(module, t), run.is_root(x))


class _AbsSumFunction(torch.autograd.Function):
    """absLRP on ``a + b``: ``R_a ~ 2 max(a, 0) R / |a + b|``, each branch rescaled on its own."""

    @staticmethod
    def forward(ctx, a, b, inplace):
        ctx.a, ctx.b = a.detach().clone() if inplace else a, b
        z = a.add_(b) if inplace else a + b
        if inplace:
            ctx.mark_dirty(a)
        ctx.sign_z, ctx.slopes = _sign(z), None
        return z

    @staticmethod
    def backward(ctx, grad):
        if ctx.slopes is None:  # built in the first pass, kept for the next
            ctx.slopes = [
                None if not isinstance(t, Tensor) else ctx.sign_z * (1 + t.sign())
                for t in (ctx.a, ctx.b)
            ]
        grads = []
        for t, slope in zip((ctx.a, ctx.b), ctx.slopes, strict=True):
            if slope is None:
                grads.append(None)
                continue
            g = (grad * slope).sum_to_size(t.shape)
            grads.append(_unit_l1(t * g, g, root=False))
        return grads[0], grads[1], None


@kernel(AbsSum)
class AbsSumKernel(Kernel):
    """absLRP on a sum: one custom node rescaling each branch on its own."""

    def op(
        self, name: str, args: tuple, kwargs: dict, inplace: bool, run: RunState
    ) -> Tensor | None:
        """``a + b`` (or ``a += b``) with the absolute rule's backward; None for other ops."""
        if name != "add" or len(args) != 2 or kwargs:
            return None
        return _AbsSumFunction.apply(*args, inplace)
