"""Layers with modified weights (z+, gamma, alpha-beta) whose backward gives only the input
gradient, and the batch slices in which a rebuilt first layer is processed."""

from __future__ import annotations

import torch
from torch import Tensor


class _ModifiedLayer(torch.autograd.Function):
    """A layer with modified weights whose backward gives only the input gradient, keeping
    neither the input nor the modified weights.

    Autograd's own convolution node saves its input for a weight gradient that LRP never asks
    for; the transposed product needs only the input's shape. Where the input is a ReLU output
    that nothing else keeps (a ReLU fused with z+, gamma or alpha-beta saves its scale instead),
    this frees one activation per layer. The modified weights (``W+``, ``[W+; W-]``) are
    rebuilt from the layer's own in the backward: a copy of every layer's weights kept from the
    forward to the backward would weigh as much as the activations of a VGG.
    """

    @staticmethod
    def forward(ctx, x, op, weight_fn, bias, lazy_shape):
        ctx.op, ctx.weight_fn, ctx.shape, ctx.stride = op, weight_fn, x.shape, x.stride()
        ctx.sliced = lazy_shape is not None
        if ctx.sliced:  # the values are never read (see modified_layer)
            return x.new_zeros(()).expand(lazy_shape)
        return op.forward(x, weight_fn(), bias)

    @staticmethod
    def backward(ctx, grad):
        op, weight = ctx.op, ctx.weight_fn()
        # a convolution's transposed product takes a real tensor shaped like the input (its
        # values are never read); a linear layer's needs none
        like = grad.new_empty_strided(ctx.shape, ctx.stride) if op.is_conv else None
        if not (ctx.sliced and op.is_conv):
            return op.transpose(grad, weight, like), None, None, None, None
        # A rebuilt first layer: in slices of the batch, written into `like`. In one call the
        # convolution library's scratch space grows with the batch, at the backward's peak.
        for rows in batch_slices(len(grad), like.device, like.numel() * like.element_size()):
            like[rows] = op.transpose(grad[rows], weight, like[rows])
        return like, None, None, None, None


#: Slices of the batch in which a rebuilt first layer (a spec's ``recompute_h``) is processed
#: on the CPU; on a GPU, where each slice costs kernel launches that a small batch cannot hide,
#: slices of at most ``GPU_SLICE_BYTES`` of ``h`` (one slice up to that size): smaller slices
#: multiply the launches, larger ones the peak memory (the sweep behind the size is in the docs'
#: performance page).
SLICES, GPU_SLICE_BYTES = 8, 1 << 24


def batch_slices(
    n: int, device: torch.device | str = "cpu", nbytes: int = 0, parts: int = SLICES
) -> list[slice]:
    """Consecutive slices covering ``range(n)``, the batch of a tensor of ``nbytes`` bytes on
    ``device``: ``parts`` (or fewer) on the CPU, elsewhere as few as keep each slice under
    ``GPU_SLICE_BYTES``."""
    if torch.device(device).type != "cpu":
        parts = -(-nbytes // GPU_SLICE_BYTES)
    step = max(1, -(-n // max(1, parts)))
    return [slice(i, i + step) for i in range(0, n, step)]


def modified_layer(
    op, x: Tensor, weight_fn, bias: Tensor | None, lazy_shape: list[int] | None = None
) -> Tensor:
    """``h = op(x, weight_fn(), bias)`` with a gradient into ``x`` only (:class:`_ModifiedLayer`).

    ``weight_fn`` builds the modified weights from the layer's (it runs again in the backward).
    With ``lazy_shape``, ``h`` is a placeholder of that shape, not computed: for a consumer that
    rebuilds what it needs of ``h`` in the backward (a spec's ``recompute_h``).
    """
    if x.requires_grad:
        return _ModifiedLayer.apply(x, op, weight_fn, bias, lazy_shape)
    return op.forward(x, weight_fn(), bias)
