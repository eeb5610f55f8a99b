"""The transposed product of a first convolution, as matrix products and a col2im (``F.fold``).

On CPU, oneDNN's input-gradient kernel is slow for a 2-d convolution with one to three input
channels and many output channels: the first layer of an image model. There the same product is
faster as ``W^T grad`` per output position (one matrix product) scattered back onto the input
grid by ``F.fold`` when each input channel feeds many output channels (LeNet-5's 1 -> 20,
VGG's 3 -> 64); with fewer output channels per input channel (2 -> 16, say) the native kernel
wins (the measurements are in the docs' performance page).
The engine routes exactly those layers here (:func:`use_fold`): the rules' transposed products
through :meth:`prune.lrp.fast.base.LinearOp.transpose`, the native fast path through
:class:`FoldConv`. The result equals the native one up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: at most this many input channels ...
MAX_IN = 3
#: ... and at least this many output channels per input channel
MIN_OUT_PER_IN = 16
#: samples per ``W^T grad`` product: bounds the column buffer (``CHUNK x C_in k_h k_w x L``)
CHUNK = 64


def use_fold(weight: Tensor, t: Tensor) -> bool:
    """Whether the transposed product of a 2-d convolution with ``weight`` (groups 1) on ``t``'s
    device and dtype goes through :func:`fold_transpose`."""
    out_ch, in_ch = weight.shape[:2]
    return (
        t.device.type == "cpu"
        and t.dtype == weight.dtype
        and in_ch <= MAX_IN
        and out_ch >= MIN_OUT_PER_IN * in_ch
    )


def fold_transpose(
    grad: Tensor, weight: Tensor, size: torch.Size, stride, padding, dilation
) -> Tensor:
    """``W^T grad`` of a 2-d convolution (groups 1) onto an input of spatial ``size``."""
    wt = weight.flatten(1).t()  # (C_in k_h k_w, C_out)
    out = grad.new_empty(grad.shape[0], weight.shape[1], *size)
    for s in range(0, grad.shape[0], CHUNK):
        cols = torch.matmul(wt, grad[s : s + CHUNK].flatten(2))  # (b, C_in k_h k_w, L)
        out[s : s + CHUNK] = F.fold(cols, size, weight.shape[-2:], dilation, padding, stride)
    return out


class FoldConv(torch.autograd.Function):
    """``conv2d`` whose backward gives the input's gradient by :func:`fold_transpose` (the weights
    and bias are constants: no gradient for them). Keeps only the weight, not the input."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(weight)
        ctx.geometry = (x.shape[-2:], stride, padding, dilation)
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return fold_transpose(grad, weight, *ctx.geometry), None, None, None, None, None
