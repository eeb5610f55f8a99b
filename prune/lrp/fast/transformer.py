"""Kernels of the transformer rules of AttnLRP and CP-LRP (:mod:`prune.lrp.rules.transformer`).

In the gradient form of :mod:`prune.lrp.fast.base` (``R = a * g``) these rules are the ordinary
gradient with at most one rescale, so the relevance pass costs about one backward pass:

- the softmax's deep Taylor rule, ``R_i = x_i (R_i - s_i sum_j R_j)``, gives
  ``g_in = s (g - sum_j s_j g_j)``: the softmax's own gradient;
- the uniform rule of a product of ``n`` factors is the product's gradient after the rescale
  ``z / stab(n z)``; CP-LRP's held-constant product the gradient through its last factor after
  ``z / stab(z)``, the other factors detached;
- LayerNorm at constant ``sigma``: ``g_in = (t - mean(t)) / sigma`` for
  ``t = w * g * y / stab(y)``.

``scaled_dot_product_attention`` is written out with these (:mod:`prune.lrp.fast.attention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.lrp.fast.base import Kernel, takes_relevance
from prune.lrp.fast.flow import rescaled, scaled_grad, self_ratio
from prune.lrp.fast.registry import kernel
from prune.lrp.rules.transformer import HeldConstant, LayerNormIdentity, SoftmaxTaylor, Uniform
from prune.lrp.state import RunState

#: torch's functions for the ``op_map`` names of products (``__matmul__``, ``bmm``, ... alike)
PRODUCTS = {"mul": torch.mul, "matmul": torch.matmul}


def _inputs(args: tuple) -> list[int]:
    """Positions in ``args`` of the tensors that take relevance."""
    return [i for i, a in enumerate(args) if takes_relevance(a)]


class _LayerNormIdentity(torch.autograd.Function):
    """The native LayerNorm; the backward of the rule at constant ``sigma``, its rescale of the
    gradient by ``y / stab(y)`` computed there from the output (as :class:`flow._EpsScale`)."""

    @staticmethod
    def forward(ctx, x, shape, weight, bias, eps, epsilon, run):
        y, _, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
        ctx.rstd, ctx.weight, ctx.epsilon, ctx.scale = rstd, weight, epsilon, None
        ctx.dims = tuple(range(-len(shape), 0))
        ctx.save_for_backward(y)  # an unannounced in-place change of y is an error
        if run is not None:
            run.watch(y, lambda: _LayerNormIdentity.fix(ctx))
        return y

    @staticmethod
    def backward(ctx, grad):
        if ctx.scale is not None:
            t = grad * ctx.scale
        else:
            (y,) = ctx.saved_tensors
            t = scaled_grad(grad, y, ctx.epsilon)
        if ctx.weight is not None:
            t = t * ctx.weight
        return (t - t.mean(ctx.dims, keepdim=True)) * ctx.rstd, None, None, None, None, None, None

    @staticmethod
    def fix(ctx) -> None:
        """Compute the scale now: the output is about to change in place."""
        if ctx.scale is None:
            (y,) = ctx.saved_tensors
            ctx.scale = self_ratio(y, ctx.epsilon)


def layer_norm_options(args: tuple, kwargs: dict) -> tuple | None:
    """``(x, shape, weight, bias, eps)`` of a ``F.layer_norm`` call."""
    names = ("normalized_shape", "weight", "bias", "eps")
    options = {**dict(zip(names, args[1:], strict=False)), **kwargs}
    if set(options) - set(names):
        return None
    shape = tuple(options["normalized_shape"])
    return args[0], shape, options.get("weight"), options.get("bias"), options.get("eps", 1e-5)


def softmax_options(args: tuple, kwargs: dict) -> tuple | None:
    """``(x, dim, dtype)`` of a ``softmax`` call (``torch.softmax``, ``F.softmax``,
    ``x.softmax``), or None without a ``dim``."""
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    dtype = kwargs.get("dtype", args[2] if len(args) > 2 else None)
    if dim is None:
        return None
    return args[0], dim, dtype if isinstance(dtype, torch.dtype) else None


@kernel(LayerNormIdentity)
class LayerNormIdentityKernel(Kernel):
    """LayerNorm at constant ``sigma``: one elementwise node after the native normalisation."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """``module`` (an ``nn.LayerNorm``) on ``x`` with the rule's backward."""
        if not isinstance(module, nn.LayerNorm) or not x.requires_grad:
            return type(module).forward(module, x)
        shape, eps = tuple(module.normalized_shape), module.eps
        return _LayerNormIdentity.apply(
            x, shape, module.weight, module.bias, eps, self.epsilon, run
        )

    def op(self, name, args, kwargs, inplace, run):
        """``F.layer_norm`` with the rule's backward."""
        options = layer_norm_options(args, kwargs) if name == "layer_norm" else None
        if options is None:
            return None
        return _LayerNormIdentity.apply(*options, self.epsilon, run)


@kernel(SoftmaxTaylor)
class SoftmaxTaylorKernel(Kernel):
    """The softmax's deep Taylor rule: the native softmax (its gradient is the rule)."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """``module`` (an ``nn.Softmax``) on ``x``."""
        return type(module).forward(module, x)

    def op(self, name, args, kwargs, inplace, run):
        """``softmax`` natively."""
        options = softmax_options(args, kwargs) if name == "softmax" else None
        return None if options is None else F.softmax(*options[:2], dtype=options[2])


@kernel(Uniform)
class UniformKernel(Kernel):
    """The uniform rule: the native product, its gradient rescaled by ``z / stab(n z)``."""

    def op(self, name, args, kwargs, inplace, run):
        """``a * b`` or ``a @ b`` with the rule's backward."""
        if name not in PRODUCTS or inplace or kwargs or len(args) != 2:
            return None
        factors = len(_inputs(args))
        return rescaled(PRODUCTS[name](*args), factors, self.stabilizer, run)


@kernel(HeldConstant)
class HeldConstantKernel(Kernel):
    """CP-LRP's product: the gradient through the last factor only, rescaled by ``z / stab(z)``."""

    def op(self, name, args, kwargs, inplace, run):
        """``A @ v`` (or ``a * b``) with ``A`` held constant."""
        if name not in PRODUCTS or inplace or kwargs or len(args) != 2:
            return None
        held = _inputs(args)[:-1]
        args = tuple(a.detach() if i in held else a for i, a in enumerate(args))
        return rescaled(PRODUCTS[name](*args), 1, self.stabilizer, run)
