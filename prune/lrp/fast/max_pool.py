"""Max-pooling that keeps only its indices for the backward pass.

Under LRP a max-pool's own gradient is the winner-takes-all rule, so it runs natively; but the
native node also keeps its input, which after a fused ReLU nobody else needs. This node keeps
the indices alone.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _MaxPool2d(torch.autograd.Function):
    """``max_pool2d`` that keeps only the indices for its backward, not its input.

    The native node also keeps the input, which after a fused ReLU nobody else needs.
    """

    @staticmethod
    def forward(ctx, x, module):
        out, indices = torch.nn.functional.max_pool2d(
            x,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            ceil_mode=module.ceil_mode,
            return_indices=True,
        )
        ctx.module, ctx.shape = module, x.shape
        ctx.save_for_backward(indices)
        return out

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        m = ctx.module
        like = grad.new_empty(ctx.shape)
        grad_in = torch.ops.aten.max_pool2d_with_indices_backward(
            grad,
            like,
            _pair(m.kernel_size),
            _pair(m.stride or m.kernel_size),
            _pair(m.padding),
            _pair(m.dilation),
            m.ceil_mode,
            indices,
        )
        return grad_in, None


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, tuple | list) else [v, v]


def max_pool(module: torch.nn.MaxPool2d, x: Tensor) -> Tensor | None:
    """``module(x)`` keeping only the indices for the backward, or ``None`` if not applicable."""
    if module.return_indices or x.dim() != 4 or not x.requires_grad:
        return None
    return _MaxPool2d.apply(x, module)
