"""Kernels of the rules of linear and convolutional layers (:mod:`prune.lrp.rules.linear`).

Each computes ``R_in = sum_k m_k(x) * (W_k^T (R / stab(z_k)))`` in the gradient form
``g = R / a`` of :mod:`prune.lrp.fast.base`: ``forward_impl`` / ``backward_impl`` for the
general case (one custom node), and ``fast`` where native autograd does the products.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.fast.base import LinearKernel, block_weight
from prune.lrp.fast.flow import Substitute
from prune.lrp.fast.modified import modified_layer
from prune.lrp.fast.registry import kernel
from prune.lrp.fast.specs import AlphaBetaSpec, GammaSpec, PlusSpec
from prune.lrp.rules.base import negative, nonnegative, positive, ratio
from prune.lrp.rules.linear import LRP0, AlphaBeta, Epsilon, Gamma, ZPlus

#: Alpha-beta keeps two scales per output unit for the backward, twice what a ReLU network's
#: gradient keeps. Where the layer has this many times fewer input channels than its two stacked
#: outputs (a first layer on pixels), the forward computes only the real output and the backward
#: rebuilds the stacked one and the scales from the input: one more product of the cheapest
#: layer for three activations less of the largest.
RECOMPUTE_RATIO = 8


@kernel(Epsilon)
class EpsilonKernel(LinearKernel):
    """Epsilon: the native layer, its rescale owed to the next consumer."""

    always_fast = True

    def fast(self, op, x, weight, bias, run):
        """Native layer; the rescale ``z / stab(z)`` is owed to the consumer (flow.py)."""
        out = op.forward(x, weight, bias)
        run.mark_pending(out, self.epsilon)
        return out

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        return z, (ratio(z, z, self.epsilon), weight, x if root else None)

    def backward_impl(self, op, saved, grad, root, like):
        _, weight, x = saved  # grad arrives scaled (see LinearKernel.output_scale)
        grad_in = op.transpose(grad, weight, like)
        return x * grad_in if root else grad_in


@kernel(LRP0)
class LRP0Kernel(LinearKernel):
    """LRP-0: the plain gradient."""

    output_scale = False
    always_fast = True

    def fast(self, op, x, weight, bias, run):
        """The plain gradient."""
        return op.forward(x, weight, bias)

    def forward_impl(self, op, x, weight, bias, root):
        return op.forward(x, weight, bias), (weight, x if root else None)

    def backward_impl(self, op, saved, grad, root, like):
        weight, x = saved
        grad_in = op.transpose(grad, weight, like)
        return x * grad_in if root else grad_in


def _reduce_signed(root: bool, x: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """``x+ * pos + x- * neg`` as relevance (root) or as gradient ``[x>0] pos + [x<0] neg``."""
    if root:
        return x.clamp(min=0) * pos + x.clamp(max=0) * neg
    return torch.where(x > 0, pos, torch.where(x < 0, neg, torch.zeros_like(pos)))


@kernel(ZPlus)
class ZPlusKernel(LinearKernel):
    """z+: the native ``W+`` layer on a nonnegative input."""

    def fast(self, op, x, weight, bias, run):
        """On a nonnegative input: native ``W+`` layer under a :class:`Substitute`."""
        if not nonnegative(x):
            return None
        h = modified_layer(op, x, lambda: weight.clamp(min=0), positive(bias))
        return Substitute.apply(h, x, PlusSpec(op, weight, bias, self.stabilizer))

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        wp = weight.clamp(min=0)
        if nonnegative(x):
            den = op.forward(x, wp, positive(bias))
            return z, (ratio(z, den, self.stabilizer), wp, None, x if root else None)
        wn = weight.clamp(max=0)
        xs = [x.clamp(min=0), x.clamp(max=0)]
        (den,) = op.forward_blocks(xs, [[wp, wn]], [positive(bias)])
        return z, (ratio(z, den, self.stabilizer), wp, wn, x)

    def backward_impl(self, op, saved, grad, root, like):
        _, wp, wn, x = saved
        c = grad  # arrives scaled (see LinearKernel.output_scale)
        if wn is None:
            pos = op.transpose(c, wp, like)
            return x * pos if root else pos
        pos, neg = op.transpose_blocks([c], [[wp, wn]], like)
        return _reduce_signed(root, x, pos, neg)


@kernel(AlphaBeta)
class AlphaBetaKernel(LinearKernel):
    """Alpha-beta: one native layer of stacked ``[W+; W-]`` weights."""

    output_scale = False  # two scales, one per sign

    def fast(self, op, x, weight, bias, run):
        """One native layer under a :class:`Substitute`: ``[W+; W-]`` on a nonnegative input;
        on an input of both signs ``[[W+, W-], [W-, W+]]`` on ``[x+, x-]``, whose gradient
        reaches ``x`` through the two clamps (``R = x g = x+ g+ + x- g-``)."""
        dim = 1 if op.is_conv else -1
        if nonnegative(x):
            if self.beta == 0:  # alpha = 1: z+
                h = modified_layer(op, x, lambda: weight.clamp(min=0), positive(bias))
                return Substitute.apply(h, x, PlusSpec(op, weight, bias, self.stabilizer))
            if op.is_conv and op.groups != 1:  # [W+; W-] would mix the groups: the general node
                return None
            inputs = x

            def stacked() -> Tensor:
                return torch.cat([weight.clamp(min=0), weight.clamp(max=0)])

        elif op.is_conv and op.groups != 1:
            return None
        else:
            inputs = torch.cat([x.clamp(min=0), x.clamp(max=0)], dim)

            def stacked() -> Tensor:
                wp, wn = weight.clamp(min=0), weight.clamp(max=0)
                return block_weight([[wp, wn], [wn, wp]])

        stacked_bias = None if bias is None else torch.cat([positive(bias), negative(bias)])
        spec = AlphaBetaSpec(dim, self.alpha, self.beta, self.stabilizer)
        if run.passes == 1 and inputs.shape[dim] * RECOMPUTE_RATIO <= 2 * weight.shape[0]:
            # a first layer (few input channels): the forward computes only the real output;
            # the backward rebuilds h and the scales from the input
            spec.z = op.forward(x.detach(), weight, bias)
            shape = list(spec.z.shape)
            shape[dim] *= 2
            h = modified_layer(op, inputs, stacked, stacked_bias, lazy_shape=shape)

            def recompute_h(rows: slice = slice(None)) -> Tensor:
                return op.forward(inputs.detach()[rows], stacked(), stacked_bias)

            spec.recompute_h = recompute_h
        else:
            h = modified_layer(op, inputs, stacked, stacked_bias)
        return Substitute.apply(h, x, spec)

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        eps = self.stabilizer
        if nonnegative(x):
            zp = op.forward(x, wp, positive(bias))
            zn = z - zp  # = op(x, W-, b-) by linearity
            saved = (ratio(z, zp, eps), ratio(z, zn, eps), wp, wn, None if not root else x, True)
            return z, saved
        xs = [x.clamp(min=0), x.clamp(max=0)]
        zp, zn = op.forward_blocks(xs, [[wp, wn], [wn, wp]], [positive(bias), negative(bias)])
        return z, (ratio(z, zp, eps), ratio(z, zn, eps), wp, wn, x, False)

    def backward_impl(self, op, saved, grad, root, like):
        sp, sn, wp, wn, x, nonneg = saved
        cp, cn = grad * sp, grad * sn
        if nonneg:
            grad_in = self.alpha * op.transpose(cp, wp, like)
            if self.beta:
                grad_in = grad_in - self.beta * op.transpose(cn, wn, like)
            return x * grad_in if root else grad_in
        cp.mul_(self.alpha)
        cn.mul_(-self.beta)
        pos, neg = op.transpose_blocks([cp, cn], [[wp, wn], [wn, wp]], like)
        return _reduce_signed(root, x, pos, neg)


@kernel(Gamma)
class GammaKernel(LinearKernel):
    """Gamma: the native ``W + g W+`` layer on a nonnegative input."""

    def fast(self, op, x, weight, bias, run):
        """On a nonnegative input: native ``W + g W+`` layer under a :class:`Substitute`."""
        if not nonnegative(x):
            return None
        g = self.gamma
        h_bias = None if bias is None else bias + g * bias.clamp(min=0)
        h = modified_layer(op, x, lambda: weight + g * weight.clamp(min=0), h_bias)
        spec = GammaSpec(op, weight, bias, g, self.stabilizer)
        return Substitute.apply(h, x, spec)

    def forward_impl(self, op, x, weight, bias, root):
        g, eps = self.gamma, self.stabilizer
        z = op.forward(x, weight, bias)
        wa, wb = weight + g * weight.clamp(min=0), weight + g * weight.clamp(max=0)
        ba = None if bias is None else bias + g * bias.clamp(min=0)
        bb = None if bias is None else bias + g * bias.clamp(max=0)
        up = z > 0
        if nonnegative(x):
            p = op.forward(x, weight.clamp(min=0), positive(bias))
            den_pos, den_neg = z + g * p, (1 + g) * z - g * p  # op(x, Wa, ba), op(x, Wb, bb)
            scale = torch.where(up, ratio(z, den_pos, eps), ratio(z, den_neg, eps) * (z < 0))
            return z, (scale, up, wa, wb, x if root else None, True)
        xs = [x.clamp(min=0), x.clamp(max=0)]
        den_pos, den_neg = op.forward_blocks(xs, [[wa, wb], [wb, wa]], [ba, bb])
        scale = torch.where(up, ratio(z, den_pos, eps), ratio(z, den_neg, eps) * (z < 0))
        return z, (scale, up, wa, wb, x, False)

    def backward_impl(self, op, saved, grad, root, like):
        _, up, wa, wb, x, nonneg = saved
        c = grad  # arrives scaled (see LinearKernel.output_scale)
        c_pos = torch.where(up, c, torch.zeros_like(c))
        c_neg = c - c_pos
        has_neg = bool(c_neg.any())  # after a ReLU the negative branch carries nothing
        if nonneg:
            grad_in = op.transpose(c_pos, wa, like)
            if has_neg:
                grad_in = grad_in + op.transpose(c_neg, wb, like)
            return x * grad_in if root else grad_in
        pos, neg = op.transpose_blocks([c_pos, c_neg], [[wa, wb], [wb, wa]], like)
        return _reduce_signed(root, x, pos, neg)
