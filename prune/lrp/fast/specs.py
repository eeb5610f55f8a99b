"""Per-rule specs of :class:`prune.lrp.fast.flow.Substitute` for z+, gamma and alpha-beta.

Each says how to get the real output ``z`` from the modified one ``h`` and how to scale the
gradient into ``h``: for any consumer (:meth:`backward`) and for a ReLU (:meth:`relu_scale`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.fast.flow import Spec, positive_ratio
from prune.lrp.rules.base import ratio


class PlusSpec(Spec):
    """z+ on a nonnegative input: ``h = W+ x + b+``, gradient ``g * z / stab(h)``."""

    def __init__(self, op, weight: Tensor, bias: Tensor | None, epsilon: float) -> None:
        self.op, self.weight, self.bias, self.epsilon = op, weight, bias, epsilon

    def value(self, h, x):
        return self.op.forward(x, self.weight, self.bias)

    def backward(self, z, h, x, grad):
        return grad * ratio(z, h, self.epsilon), None

    def relu_scale(self, y, h):
        return positive_ratio(y, h, self.epsilon)


class GammaSpec(PlusSpec):
    """Gamma on a nonnegative input: ``h = (W + g W+) x + (b + g b+)`` for positive outputs.

    Negative outputs (only reached without a following ReLU) use ``W + g W-`` through one
    explicit transposed product into ``x``.
    """

    def __init__(self, op, weight, bias, gamma: float, epsilon: float) -> None:
        super().__init__(op, weight, bias, epsilon)
        self.gamma = gamma

    def backward(self, z, h, x, grad):
        eps, g = self.epsilon, self.gamma
        grad_h = grad * torch.where(z > 0, ratio(z, h, eps), torch.zeros_like(z))
        neg = z < 0
        if not bool(neg.any()):
            return grad_h, None
        c_neg = grad * ratio(z, (2 + g) * z - h, eps) * neg  # den = (1+g) z - g (W+ x + b+)
        w_neg = self.weight + g * self.weight.clamp(max=0)
        return grad_h, self.op.transpose(c_neg, w_neg, x)


class AlphaBetaSpec(Spec):
    """Alpha-beta on a nonnegative input: ``h = [W+; W-] x + [b+; b-]`` stacked on the channels.

    One product with the stacked weights gives both normalisers in the forward, and one
    transposed product both terms ``alpha W+^T (g z / z+) - beta W-^T (g z / z-)`` in the backward.
    """

    #: its fused ReLU scale rounds differently from :meth:`backward`: a recorded output is not fused
    records_fused = False

    def __init__(self, dim: int, alpha: float, beta: float, epsilon: float) -> None:
        self.dim, self.alpha, self.beta, self.epsilon = dim, alpha, beta, epsilon
        #: with ``recompute_h`` (rules.RECOMPUTE_RATIO): the real output, computed with the
        #: layer's own weights, as ``h`` is only a placeholder in the forward
        self.z: Tensor | None = None

    def value(self, h, x):
        if self.z is not None:  # h is a placeholder
            z, self.z = self.z, None
            return z
        zp, zn = h.chunk(2, self.dim)
        return zp + zn

    def backward(self, z, h, x, grad):
        if self.recompute_h is not None:
            h = self.recompute_h()
        zp, zn = h.chunk(2, self.dim)
        sp = ratio(z, zp, self.epsilon).mul_(self.alpha)
        sn = ratio(z, zn, self.epsilon).mul_(-self.beta)
        return torch.cat([grad * sp, grad * sn], self.dim), None

    def _pair(self, t: Tensor) -> Tensor:
        """``(B, 2C, ...)`` viewed as ``(B, 2, C, ...)`` (dim 1 only; else ``None``)."""
        if t.dim() < 2 or self.dim % t.dim() != 1:
            return None
        return t.view(t.shape[0], 2, t.shape[1] // 2, *t.shape[2:])

    def relu_scale(self, y, h):
        pair = self._pair(h)
        if pair is None or not h.is_contiguous():
            zp, zn = h.chunk(2, self.dim)
            sp = positive_ratio(y, zp, self.epsilon).mul_(self.alpha)
            sn = ratio(y, zn, self.epsilon).mul_(-self.beta)
            return torch.cat([sp, sn], self.dim)
        if self.epsilon == 0:
            scale = torch.empty_like(h)
            out = self._pair(scale)
            out[:, 0] = positive_ratio(y, pair[:, 0], 0.0).mul_(self.alpha)
            torch.mul(ratio(y, pair[:, 1], 0.0), -self.beta, out=out[:, 1])
            return scale
        # written straight into the halves of one buffer: no temporaries of the output's size
        # (this is the forward's memory peak of a first layer)
        scale = torch.empty_like(h)
        sp, sn = self._pair(scale).unbind(1)
        torch.clamp_min(pair[:, 0], 0, out=sp).add_(self.epsilon)  # stab(z+), z+ >= 0 where y > 0
        torch.div(y, sp, out=sp).mul_(self.alpha)
        torch.sign(pair[:, 1], out=sn).add_(0.5).sign_().mul_(self.epsilon).add_(pair[:, 1])
        torch.div(y, sn, out=sn).mul_(-self.beta)  # y / stab(z-)
        return scale

    def relu_scale_from(self, h: Tensor) -> Tensor:
        """:meth:`relu_scale` computed in ``h`` itself (a recomputed, private ``h``: a slice of
        the batch, see :meth:`~prune.lrp.fast.flow.Spec.relu_scale_rebuilt`)."""
        pair = self._pair(h)
        if pair is None or not h.is_contiguous() or self.epsilon == 0:
            return super().relu_scale_from(h)
        sp, sn = pair.unbind(1)
        y = torch.add(sp, sn).clamp_min_(0)
        sp.clamp_min_(0).add_(self.epsilon)  # stab(z+), z+ >= y > 0 where y > 0
        torch.div(y, sp, out=sp).mul_(self.alpha)
        # z- <= 0, so stab(z-) = z- - eps; at z- == 0 exactly (+eps in the rule) every
        # contribution W-_ij x_i is 0, so the sign of this scale reaches no relevance
        sn.sub_(self.epsilon)
        torch.div(y, sn, out=sn).mul_(-self.beta)
        return h

    def relu_backward(self, scale, grad, inplace=False):
        pair = self._pair(scale)
        if pair is None or not scale.is_contiguous():
            return scale * torch.cat([grad, grad], self.dim)
        if inplace:
            pair.mul_(grad.unsqueeze(1))
            return scale
        return (pair * grad.unsqueeze(1)).view(scale.shape)
