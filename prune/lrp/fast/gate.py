"""Kernel of the gate rule (:mod:`prune.lrp.rules.gate`) on ``a * b``.

In the gradient form ``R = a * g`` the rule is the ordinary gradient with the gates cut off: a
factor that takes relevance gets ``R_a / a = (b g).sum_to_size(a) / k`` (``a`` is constant along
the axes it is broadcast along), which is its gradient divided by the number ``k`` of such
factors; a gate gets zeros. The zeros still flow into the gate's branch, so that its layers
record zero relevance, as in the reference form, instead of none.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.lrp.fast.base import Kernel
from prune.lrp.fast.registry import kernel
from prune.lrp.rules.gate import Gate, takers
from prune.lrp.state import RunState


class _GatedProduct(torch.autograd.Function):
    """``a * b`` of two factors that need relevance; backward: the gradient of each factor in
    ``take`` divided by ``len(take)``, zeros for the other."""

    @staticmethod
    def forward(ctx, a, b, take):
        ctx.take, ctx.shapes = take, (a.shape, b.shape)
        ctx.save_for_backward(b if 0 in take else None, a if 1 in take else None)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        (sa, sb), take = ctx.shapes, ctx.take
        other_of_a, other_of_b = ctx.saved_tensors
        if len(take) > 1:
            grad = grad / len(take)
        ga = (grad * other_of_a).sum_to_size(sa) if 0 in take else grad.new_zeros(sa)
        gb = (grad * other_of_b).sum_to_size(sb) if 1 in take else grad.new_zeros(sb)
        return ga, gb, None


def _needs_relevance(t: object) -> bool:
    return isinstance(t, Tensor) and t.requires_grad and not isinstance(t, nn.Parameter)


@kernel(Gate)
class GateKernel(Kernel):
    """The gate rule: ``x * c`` natively (one factor needs relevance: its gradient is the rule),
    ``a * b`` of two such factors as one node that cuts off the gate."""

    def op(
        self, name: str, args: tuple, kwargs: dict, inplace: bool, run: RunState
    ) -> Tensor | None:
        """``a * b`` with the gate rule's backward; None for other ops and other calls."""
        if name != "mul" or inplace or len(args) != 2 or kwargs:
            return None
        a, b = args
        if _needs_relevance(a) and _needs_relevance(b):
            out_shape = torch.broadcast_shapes(a.shape, b.shape)
            return _GatedProduct.apply(a, b, tuple(takers([a.shape, b.shape], out_shape)))
        # a constant factor (a number, a tensor without gradient, a parameter) is held as it is
        a = a.detach() if isinstance(a, Tensor) and not _needs_relevance(a) else a
        b = b.detach() if isinstance(b, Tensor) and not _needs_relevance(b) else b
        return a * b
