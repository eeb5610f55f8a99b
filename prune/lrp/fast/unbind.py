"""``unbind`` whose gradient keeps the layout of its input: one copy in the backward, not two.

Autograd's gradient of ``t.unbind(d)`` stacks the pieces' gradients into a new contiguous tensor.
Where ``t`` is a permuted view of a layer's output (attention's
``qkv(x).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)``), going back to that output's layout then
takes a second copy. Here the pieces' gradients are written straight into a tensor laid out as
``t``, so the permute and reshape back are views. The values are autograd's.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _dense(t: Tensor) -> bool:
    """Whether ``t``'s elements fill a block of memory without gaps or overlaps (any order)."""
    expected = 1
    for i in sorted(range(t.dim()), key=t.stride):
        if t.shape[i] != 1 and t.stride(i) != expected:
            return False
        expected *= t.shape[i]
    return True


class _Unbind(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor, dim: int):
        ctx.dim, ctx.shape, ctx.dtype, ctx.device = dim, t.shape, t.dtype, t.device
        ctx.stride = t.stride() if _dense(t) else None
        return t.unbind(dim)

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        options = {"dtype": ctx.dtype, "device": ctx.device}
        if ctx.stride is None:
            out = torch.empty(ctx.shape, **options)
        else:
            out = torch.empty_strided(ctx.shape, ctx.stride, **options)
        if any(g is None for g in grads):  # pieces with no gradient (CP-LRP's q and k)
            out.zero_()  # in one sweep of the block, not piece by piece
        for i, g in enumerate(grads):
            if g is not None:
                out.select(ctx.dim, i).copy_(g)
        return out, None


def unbind(t: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    """``t.unbind(dim)``, its gradient laid out as ``t``."""
    if not t.requires_grad or t.dim() == 0:
        return t.unbind(dim)
    return _Unbind.apply(t, dim % t.dim())
