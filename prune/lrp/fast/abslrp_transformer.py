"""Kernels of the absLRP rules for the parts of a transformer (:mod:`prune.lrp.rules.abslrp`).

Each is one elementwise node (LayerNorm, softmax, activation) or one node per product, whose
backward builds the absolute twin's slope from saved tensors instead of running the layer
twice under autograd. In the gradient form the incoming ``R / |y|`` is ``sign(y) * g``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.lrp.fast.abslrp import _absorbs, rescale_of, unit_input
from prune.lrp.fast.base import Kernel, takes_relevance
from prune.lrp.fast.registry import kernel
from prune.lrp.fast.transformer import layer_norm_options, softmax_options
from prune.lrp.rules.abslrp import AbsActivation, AbsLayerNorm, AbsProduct, AbsSoftmax
from prune.lrp.rules.base import nonnegative
from prune.lrp.state import RunState


class _AbsLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shape, weight, bias, eps, how):
        y, _, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
        # the statistics of |x|, through a weight (any: only the statistics are read), as the CPU
        # kernel without one is about half as fast
        w = x.new_ones(shape) if weight is None else weight
        rstd_abs = torch.native_layer_norm(x.abs(), shape, w, None, eps)[2]
        slope = torch.addcmul(w * rstd, x.sign(), w.abs() * rstd_abs)
        ctx.x, ctx.slope, ctx.how = x, slope.mul_(y.sign()), how
        return y

    @staticmethod
    def backward(ctx, grad):
        return unit_input(ctx.x, grad * ctx.slope, ctx.how), None, None, None, None, None


@kernel(AbsLayerNorm)
class AbsLayerNormKernel(Kernel):
    """absLRP on LayerNorm: the native normalisation, one elementwise node."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """``module`` (an ``nn.LayerNorm``) on ``x`` with the absolute rule's backward."""
        if not isinstance(module, nn.LayerNorm) or not x.requires_grad:
            return type(module).forward(module, x)
        shape, how = tuple(module.normalized_shape), rescale_of(x, run)
        out = _AbsLayerNorm.apply(x, shape, module.weight, module.bias, module.eps, how)
        return _absorbs(run, out)

    def op(self, name, args, kwargs, inplace, run):
        """``F.layer_norm`` with the absolute rule's backward."""
        options = layer_norm_options(args, kwargs) if name == "layer_norm" else None
        if options is None:
            return None
        return _absorbs(run, _AbsLayerNorm.apply(*options, rescale_of(options[0], run)))


class _AbsSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, how):
        y = x.softmax(dim)
        # masked scores (-inf) stay out; looked for once, and handled only where there are
        masked = torch.isneginf(x) if x.numel() and bool(x.min() == float("-inf")) else None
        twin = x.abs() if masked is None else x.abs().masked_fill(masked, float("-inf"))
        ctx.slope = torch.addcmul(y, x.sign(), twin.softmax(dim)).mul_(y.sign())
        ctx.x, ctx.how = x, how
        if masked is not None:
            ctx.slope.masked_fill_(masked, 0.0)
            ctx.x = x.masked_fill(masked, 0.0)
        return y

    @staticmethod
    def backward(ctx, grad):
        return unit_input(ctx.x, grad * ctx.slope, ctx.how), None, None


def _abs_softmax(x: Tensor, dim: int, run: RunState) -> Tensor:
    if not x.requires_grad:
        return x.softmax(dim)
    return _absorbs(run, _AbsSoftmax.apply(x, dim, rescale_of(x, run)))


@kernel(AbsSoftmax)
class AbsSoftmaxKernel(Kernel):
    """absLRP on the softmax: the native softmax, one elementwise node."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """``module`` (an ``nn.Softmax``) on ``x`` with the absolute rule's backward."""
        return _abs_softmax(x, module.dim, run)

    def op(self, name, args, kwargs, inplace, run):
        """``softmax`` over one dimension with the absolute rule's backward."""
        options = softmax_options(args, kwargs) if name == "softmax" else None
        if options is None or options[2] is not None:  # a dtype: the reference form
            return None
        return _abs_softmax(*options[:2], run)


class _AbsActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fn, approximate, how):
        y = fn(x)
        sign_y = y.sign()
        if approximate is not None:  # GELU: its slope from one derivative, no autograd
            # gelu(x) - gelu(-x) = x (exact and tanh form), so gelu'(|x|) = 1 - gelu'(x)
            # where x < 0: (f'(x) + sign(x) f'(|x|)) sign(y) = 2 gelu'(x) sign(y) + [y < 0]
            twice = torch.ops.aten.gelu_backward(sign_y * 2, x, approximate=approximate)
            slope = twice.sub_(sign_y.clamp(max=0))
        else:
            with torch.enable_grad():
                leaf = x.detach().requires_grad_()
                both = fn(leaf) + fn(leaf.abs())
            (slope,) = torch.autograd.grad(both, leaf, torch.ones_like(x))
            slope = slope.mul_(sign_y)
        ctx.x, ctx.slope, ctx.how = x, slope, how
        return y

    @staticmethod
    def backward(ctx, grad):
        return unit_input(ctx.x, grad * ctx.slope, ctx.how), None, None, None


@kernel(AbsActivation)
class AbsActivationKernel(Kernel):
    """absLRP on an elementwise activation: one node; GELU's slopes by its own backward."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """``module`` on ``x`` with the absolute rule's backward."""
        forward = type(module).forward
        if not x.requires_grad:
            return forward(module, x)
        inplace = getattr(module, "inplace", False) is True
        approximate = module.approximate if isinstance(module, nn.GELU) else None
        fn = lambda t: forward(module, t.clone() if inplace else t)  # noqa: E731
        out = _AbsActivation.apply(x, fn, approximate, rescale_of(x, run))
        return _absorbs(run, out)


class _AbsMatmul(torch.autograd.Function):
    """``a @ b`` with absLRP's backward: ``g_a = c b^T + sign(a) (c |b|^T)`` and alike.

    Where ``a >= 0`` (attention weights) both take one product: ``g_a = c (2 b+)^T`` (``a``'s
    zeros carry no relevance, ``a * g_a``, and every absLRP node reads its gradient through that
    product or the sign of its output) and ``g_b = (a^T c) (1 + sign(b))``.
    """

    @staticmethod
    def forward(ctx, a, b, hows, nonneg_a):
        # q, k and v are strided views of one qkv output: the batched products copy such an
        # operand at every call, so it is copied once here and kept for both backward passes
        a, b = a.contiguous(), b.contiguous()
        z = a @ b
        at, bt = a.transpose(-2, -1), b.transpose(-2, -1)
        if nonneg_a:
            ctx.kept = (bt.clamp(min=0).mul_(2), b.sign().add_(1))
        else:
            ctx.kept = (a.sign(), b.sign(), bt.abs(), at.abs())
        ctx.a, ctx.b, ctx.sign_z, ctx.hows, ctx.nonneg_a = a, b, z.sign(), hows, nonneg_a
        return z

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.a, ctx.b
        at, bt = a.transpose(-2, -1), b.transpose(-2, -1)
        # contiguous, whatever the layout of the incoming gradient (a transpose of the heads)
        c = torch.mul(grad, ctx.sign_z, out=torch.empty_like(ctx.sign_z))
        if ctx.nonneg_a:
            twice_positive_bt, slope_b = ctx.kept
            grad_a = c @ twice_positive_bt
            grad_b = (at @ c).mul_(slope_b)
        else:
            sign_a, sign_b, abs_bt, abs_at = ctx.kept
            grad_a = (c @ bt).addcmul_(sign_a, c @ abs_bt)
            grad_b = (at @ c).addcmul_(sign_b, abs_at @ c)
        how_a, how_b = ctx.hows
        grad_a, grad_b = grad_a.sum_to_size(a.shape), grad_b.sum_to_size(b.shape)
        return unit_input(a, grad_a, how_a), unit_input(b, grad_b, how_b), None, None


class _AbsMul(torch.autograd.Function):
    """``a * b`` with absLRP's backward: ``g_a = c (b + sign(a) |b|)`` and alike."""

    @staticmethod
    def forward(ctx, a, b, hows):
        z = a * b
        sign_z = z.sign()  # c = sign(z) g
        slope_a = torch.addcmul(b, a.sign(), b.abs()).mul_(sign_z)
        slope_b = torch.addcmul(a, b.sign(), a.abs()).mul_(sign_z)
        ctx.a, ctx.b, ctx.slopes, ctx.hows = a, b, (slope_a, slope_b), hows
        return z

    @staticmethod
    def backward(ctx, grad):
        a, b, (slope_a, slope_b) = ctx.a, ctx.b, ctx.slopes
        grad_a = (grad * slope_a).sum_to_size(a.shape)
        grad_b = (grad * slope_b).sum_to_size(b.shape)
        how_a, how_b = ctx.hows
        return unit_input(a, grad_a, how_a), unit_input(b, grad_b, how_b), None


@kernel(AbsProduct)
class AbsProductKernel(Kernel):
    """absLRP on a product of two activations: one node; a product with one factor that needs
    relevance (``scores * scale``) runs natively, its gradient passing the relevance unchanged."""

    def op(self, name, args, kwargs, inplace, run):
        """``a * b`` or ``a @ b`` with the absolute rule's backward."""
        if name not in ("mul", "matmul") or inplace or kwargs or len(args) != 2:
            return None
        a, b = args
        both = takes_relevance(a) and takes_relevance(b)
        if name == "mul" and not both:
            return torch.mul(a, b)
        if name == "matmul" and (not both or a.dim() < 2 or b.dim() < 2):
            return None
        hows = (rescale_of(a, run), rescale_of(b, run))
        if name == "mul":
            return _absorbs(run, _AbsMul.apply(a, b, hows))
        return _absorbs(run, _AbsMatmul.apply(a, b, hows, nonnegative(a)))
