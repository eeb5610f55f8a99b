"""Kernels of the first-layer rules (:mod:`prune.lrp.rules.input`): one custom node each.

Their input relevance is not proportional to the input: on the model input they return the
relevance itself (see :mod:`prune.lrp.fast.base`).
"""

from __future__ import annotations

from prune.lrp.fast.base import LinearKernel
from prune.lrp.fast.registry import kernel
from prune.lrp.rules.base import divide_by_input, negative, positive, ratio
from prune.lrp.rules.input import Flat, WSquare, ZBox, box_bound


@kernel(ZBox)
class ZBoxKernel(LinearKernel):
    """z^B: the bounds through ``W+`` and ``W-`` in one custom node."""

    def forward_impl(self, op, x, weight, bias, root):
        low, high = box_bound(self.low, x), box_bound(self.high, x)
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        z = op.forward(x, weight, bias)
        den = z - op.forward(low, wp, positive(bias)) - op.forward(high, wn, negative(bias))
        return z, (ratio(z, den, self.stabilizer), weight, wp, wn, x, low, high)

    def backward_impl(self, op, saved, grad, root, like):
        _, weight, wp, wn, x, low, high = saved
        c = grad  # arrives scaled (see LinearKernel.output_scale)
        t_w, t_p, t_n = op.transpose_blocks([c], [[weight, wp, wn]], like)
        rel = x * t_w - low * t_p - high * t_n
        return rel if root else divide_by_input(rel, x)


@kernel(WSquare)
class WSquareKernel(LinearKernel):
    """w^2 (and flat): the squared weights in one custom node."""

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        w2, b2 = self.rule.weights(weight, bias)
        den = op.forward(x.new_ones(1, *x.shape[1:]), w2, b2)
        return z, (ratio(z, den, self.stabilizer), w2, None if root else x)

    def backward_impl(self, op, saved, grad, root, like):
        _, w2, x = saved  # grad arrives scaled (see LinearKernel.output_scale)
        rel = op.transpose(grad, w2, like)
        return rel if root else divide_by_input(rel, x)


kernel(Flat)(WSquareKernel)
