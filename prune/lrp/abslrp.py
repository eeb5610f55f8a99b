"""absLRP: relative absolute magnitude propagation (Vukadin et al. 2024, ACM TIST 15(3):47).

Each layer ``y = f(x)`` also runs as its absolute twin ``f_abs(|x|)`` with ``|W|, |b|``; the
relevance of input ``i`` is ``x_i * d(y + y_abs)/dx_i^T (R / |y|)``, which for a linear layer is
``sum_j 2 max(x_i w_ij, 0) R_j / |y_j|``: dividing by the *absolute* output keeps the relative
magnitudes of neurons with outputs of different size. After every layer the relevance is
rescaled to unit L1 norm per sample; at a residual sum each branch is rescaled on its own.
BatchNorm is a layer of its own (merging it changes the result). On a plain ReLU network the
input map is ``x`` times the gradient in which every layer after the first uses ``2 W+`` (and
the first ``W + sign(x) |W|``), up to a positive scale per sample.

The contrastive map (the paper's default) is the map of the target class minus the map of all
other classes, each from a unit-sum output relevance: see :class:`prune.lrp.composites.AbsLRP`.
In the gradient form of :mod:`prune.lrp.core` the incoming ``R / |y|`` is ``sign(y) * g``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.lrp.canonizers import batchnorm_affine
from prune.lrp.core import LinearRule, Rule, nonnegative
from prune.lrp.pooling import avg_pool
from prune.lrp.state import RunState


def _sign(t: Tensor) -> Tensor:
    """``sign(t)`` as int8, kept for the backward pass at a quarter of a float32 copy."""
    return torch.sign(t).to(torch.int8)


def _unit_l1(relevance: Tensor, grad_in: Tensor, root: bool) -> Tensor:
    """Rescale per sample so that ``sum |relevance| == 1``; return relevance (root) or gradient."""
    norm = relevance.flatten(1).abs().sum(1).clamp_min(1e-30)
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


class AbsLinear(LinearRule):
    """absLRP for linear and conv layers: ``R_i ~ sum_j 2 max(x_i w_ij, 0) R_j / |y_j|``."""

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        return z, (_sign(z), weight, x, nonnegative(x))

    def backward_impl(self, op, saved, grad, root, like):
        _, weight, x, nonneg = saved
        c = grad  # R / |y|: arrives scaled by sign(y) (see LinearRule.output_scale)
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


class AbsBatchNorm(Rule):
    """absLRP for an eval-mode BatchNorm kept as a layer: ``R_i ~ 2 max(x_i s_i, 0) R_i / |y_i|``.

    ``s`` is the per-channel scale; BatchNorm is not merged (merging changes absLRP)."""

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


class AbsNorm(Rule):
    """absLRP for average pooling: ``R_i ~ 2 max(x_i, 0) dy/dx_i R / |y|``, unit L1."""

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
        ctx.sign_z = _sign(z)
        return z

    @staticmethod
    def backward(ctx, grad):
        c = grad * ctx.sign_z
        grads = []
        for t in (ctx.a, ctx.b):
            if not isinstance(t, Tensor):
                grads.append(None)
                continue
            g = (c * (1 + t.sign())).sum_to_size(t.shape)
            grads.append(_unit_l1(t * g, g, root=False))
        return grads[0], grads[1], None


class AbsSum(Rule):
    """absLRP for residual sums ``a + b`` with separate unit-L1 rescaling of each branch."""

    def add(
        self, a: Tensor, b: Tensor | float, inplace: bool = False, run: RunState | None = None
    ) -> Tensor:
        """``a + b`` (or ``a += b``) with the absolute rule's backward."""
        return _AbsSumFunction.apply(a, b, inplace)
