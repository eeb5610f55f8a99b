"""LRP rules: how relevance passes through one layer.

Notation (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview"): a layer maps
``x`` to ``z = W x + b``; ``R`` is the relevance at its output. Every rule here computes
``R_in = sum_k m_k(x) * (W_k^T (R / stab(z_k)))`` for a few modified inputs ``m_k`` and weights
``W_k``, written in the gradient form ``g = R / a`` of :mod:`prune.lrp.core`. Stabilisers add
``epsilon`` with the sign of the denominator (zero counts as positive), as Zennit does, so that
the relevance equals Zennit's in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.lrp.core import (
    HOMOGENEOUS_ACTIVATIONS,
    LinearRule,
    Rule,
    RunState,
    divide_by_input,
    negative,
    nonnegative,
    positive,
    ratio,
)


def _check_nonneg(name: str, value: float) -> float:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


class Epsilon(LinearRule):
    """LRP-epsilon (Bach et al. 2015; Montavon et al. 2019, eq. 4).

    ``R_i = x_i sum_j w_ij R_j / (z_j + eps)``.

    Typically used in middle and upper layers. ``epsilon`` absorbs the relevance of weak or
    contradictory outputs; biases absorb their share. Costs one forward and one backward.

    Args:
        epsilon: stabiliser added to ``z`` with its sign, >= 0.
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = _check_nonneg("epsilon", epsilon)

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        return z, (ratio(z, z, self.epsilon), weight, x if root else None)

    def backward_impl(self, op, saved, grad, root, like):
        scale, weight, x = saved
        grad_in = op.transpose(grad * scale, weight, like)
        return x * grad_in if root else grad_in


class LRP0(LinearRule):
    """LRP-0 (Bach et al. 2015; Montavon et al. 2019, eq. 3): ``R_i = x_i sum_j w_ij R_j / z_j``.

    Upper layers. Without biases it conserves relevance exactly and, on ReLU networks, equals
    gradient times input. Costs exactly one forward and one backward.
    """

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


class ZPlus(LinearRule):
    """LRP-z+ (Montavon et al. 2017, deep Taylor decomposition): only positive contributions.

    Equals alpha-beta with ``alpha=1, beta=0``; for inputs of either sign the negative inputs use
    the negative weights (Zennit's generalisation). Conserves relevance apart from the bias share.
    Typically used in convolutional layers. Costs two forwards and one backward (after a ReLU).

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_nonneg("stabilizer", stabilizer)

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        wp = weight.clamp(min=0)
        if nonnegative(x):
            den = op.forward(x, wp, positive(bias))
            return z, (ratio(z, den, self.stabilizer), wp, None, x if root else None)
        wn = weight.clamp(max=0)
        den = op.forward(x.clamp(min=0), wp, positive(bias)) + op.forward(x.clamp(max=0), wn, None)
        return z, (ratio(z, den, self.stabilizer), wp, wn, x)

    def backward_impl(self, op, saved, grad, root, like):
        scale, wp, wn, x = saved
        c = grad * scale
        pos = op.transpose(c, wp, like)
        if wn is None:
            return x * pos if root else pos
        return _reduce_signed(root, x, pos, op.transpose(c, wn, like))


class AlphaBeta(LinearRule):
    """LRP-alpha-beta (Bach et al. 2015; Montavon et al. 2019, eq. 5).

    ``R_i = sum_j (alpha z+_ij / z+_j - beta z-_ij / z-_j) R_j``: positive and negative
    contributions are normalised separately and weighted. Conserves relevance when
    ``alpha - beta = 1`` (required). Typically ``alpha=2, beta=1`` in convolutional layers.

    Args:
        alpha: weight of positive contributions, >= 0.
        beta: weight of negative contributions, >= 0, with ``alpha - beta == 1``.
        stabilizer: added to each denominator with its sign, >= 0.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"alpha - beta must equal 1, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.stabilizer = _check_nonneg("stabilizer", stabilizer)

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        eps = self.stabilizer
        if nonnegative(x):
            zp = op.forward(x, wp, positive(bias))
            zn = z - zp  # = op(x, W-, b-) by linearity
            saved = (ratio(z, zp, eps), ratio(z, zn, eps), wp, wn, None if not root else x, True)
            return z, saved
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        zp = op.forward(xp, wp, positive(bias)) + op.forward(xn, wn, None)
        zn = op.forward(xp, wn, negative(bias)) + op.forward(xn, wp, None)
        return z, (ratio(z, zp, eps), ratio(z, zn, eps), wp, wn, x, False)

    def backward_impl(self, op, saved, grad, root, like):
        sp, sn, wp, wn, x, nonneg = saved
        cp, cn = grad * sp, grad * sn
        if nonneg:
            grad_in = self.alpha * op.transpose(cp, wp, like)
            if self.beta:
                grad_in = grad_in - self.beta * op.transpose(cn, wn, like)
            return x * grad_in if root else grad_in
        pos = self.alpha * op.transpose(cp, wp, like) - self.beta * op.transpose(cn, wn, like)
        neg = self.alpha * op.transpose(cp, wn, like) - self.beta * op.transpose(cn, wp, like)
        return _reduce_signed(root, x, pos, neg)


class Gamma(LinearRule):
    """LRP-gamma (Montavon et al. 2019, eq. 6), generalised to inputs of either sign (Andeol 2021).

    Outputs with ``z > 0`` spread relevance over ``W + gamma W+`` (contributions of the output's
    sign are favoured), outputs with ``z < 0`` over ``W + gamma W-``. Typically used in lower
    convolutional layers; ``gamma -> 0`` gives LRP-0, ``gamma -> inf`` z+. After a ReLU only the
    positive branch carries relevance, so it costs two forwards and one backward.

    Args:
        gamma: weight of the favoured contributions, >= 0.
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        self.gamma = _check_nonneg("gamma", gamma)
        self.stabilizer = _check_nonneg("stabilizer", stabilizer)

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
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        den_pos = op.forward(xp, wa, ba) + op.forward(xn, wb, None)
        den_neg = op.forward(xp, wb, bb) + op.forward(xn, wa, None)
        scale = torch.where(up, ratio(z, den_pos, eps), ratio(z, den_neg, eps) * (z < 0))
        return z, (scale, up, wa, wb, x, False)

    def backward_impl(self, op, saved, grad, root, like):
        scale, up, wa, wb, x, nonneg = saved
        c = grad * scale
        c_pos = torch.where(up, c, torch.zeros_like(c))
        c_neg = c - c_pos
        has_neg = bool(c_neg.any())  # after a ReLU the negative branch carries nothing
        if nonneg:
            grad_in = op.transpose(c_pos, wa, like)
            if has_neg:
                grad_in = grad_in + op.transpose(c_neg, wb, like)
            return x * grad_in if root else grad_in
        pos = op.transpose(c_pos, wa, like) + op.transpose(c_neg, wb, like)
        neg = op.transpose(c_pos, wb, like) + op.transpose(c_neg, wa, like)
        return _reduce_signed(root, x, pos, neg)


def _bound(value: float | Tensor, x: Tensor) -> Tensor:
    """A box bound as a tensor of shape ``(1, *sample)`` (or ``x.shape`` when given batched)."""
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if t.dim() == x.dim():
        return t.expand(t.shape[0], *x.shape[1:])
    try:
        return t.expand(x.shape[1:]).unsqueeze(0)
    except RuntimeError as err:
        raise ValueError(
            f"box bound of shape {tuple(t.shape)} does not broadcast to a sample "
            f"{tuple(x.shape[1:])}"
        ) from err


class ZBox(LinearRule):
    """LRP-z^B / box rule (Montavon et al. 2017, deep Taylor decomposition) for bounded pixels.

    ``R_i = sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / sum_i(...) R_j`` with the lowest and highest
    possible input values ``l`` and ``h``. Meant for the first layer, on pixel inputs, in the
    space the model sees (normalised inputs need normalised bounds). As in Zennit the bounds pass
    through ``W+, b+`` and ``W-, b-``, so the bias cancels from the denominator.

    Args:
        low: lowest input value; a float or a tensor broadcastable to one sample.
        high: highest input value; same form as ``low``.
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(
        self, low: float | Tensor = -0.4242, high: float | Tensor = 2.8215, stabilizer: float = 1e-6
    ) -> None:
        if torch.as_tensor(low).gt(torch.as_tensor(high)).any():
            raise ValueError(f"box bounds need low <= high, got low={low}, high={high}")
        self.low, self.high = low, high
        self.stabilizer = _check_nonneg("stabilizer", stabilizer)

    def forward_impl(self, op, x, weight, bias, root):
        low, high = _bound(self.low, x), _bound(self.high, x)
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        z = op.forward(x, weight, bias)
        den = z - op.forward(low, wp, positive(bias)) - op.forward(high, wn, negative(bias))
        return z, (ratio(z, den, self.stabilizer), weight, wp, wn, x, low, high)

    def backward_impl(self, op, saved, grad, root, like):
        scale, weight, wp, wn, x, low, high = saved
        c = grad * scale
        rel = x * op.transpose(c, weight, like)
        rel = rel - low * op.transpose(c, wp, like) - high * op.transpose(c, wn, like)
        return rel if root else divide_by_input(rel, x)


class WSquare(LinearRule):
    """LRP-w^2 (Montavon et al. 2017): ``R_i = sum_j w_ij^2 / sum_i w_ij^2 R_j``, ignores ``x``.

    For a first layer with unbounded inputs. Like Zennit, the bias is squared too and absorbs
    its share. Relevance does not depend on the input values (see design.md, pitfalls).

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_nonneg("stabilizer", stabilizer)

    def _weights(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return weight.square(), None if bias is None else bias.square()

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        w2, b2 = self._weights(weight, bias)
        den = op.forward(x.new_ones(1, *x.shape[1:]), w2, b2)
        return z, (ratio(z, den, self.stabilizer), w2, None if root else x)

    def backward_impl(self, op, saved, grad, root, like):
        scale, w2, x = saved
        rel = op.transpose(grad * scale, w2, like)
        return rel if root else divide_by_input(rel, x)


class Flat(WSquare):
    """LRP-flat (Lapuschkin et al. 2019): spread relevance uniformly over the receptive field.

    ``w^2`` with all weights one and no bias. First layer only; makes input relevance useless for
    input pruning (design.md, pitfalls).

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def _weights(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return torch.ones_like(weight), None


class _PassFunction(torch.autograd.Function):
    """Relevance passes unchanged: ``g_in = g * f(x) / x`` (0 where ``x == 0``)."""

    @staticmethod
    def forward(ctx, x, fn):
        y = fn(x)
        ctx.scale = divide_by_input(y, x)
        return y

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class Pass(Rule):
    """Pass-through: the layer hands its output relevance unchanged to its input.

    For elementwise layers (activations) and an unmerged BatchNorm (Zennit's ``Pass``). For ReLU
    and leaky ReLU this is the ordinary gradient and costs nothing extra; an in-place activation
    runs out of place. For other activations relevance on exactly-zero inputs is absorbed.
    """

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward ``x`` through the elementwise ``module`` with the pass-through backward."""
        if isinstance(module, nn.ReLU):
            return F.relu(x)
        if isinstance(module, nn.LeakyReLU):
            return F.leaky_relu(x, module.negative_slope)
        if isinstance(module, HOMOGENEOUS_ACTIVATIONS) or not x.requires_grad:
            return type(module).forward(module, x)
        return _PassFunction.apply(x, lambda t: type(module).forward(module, t))


class _NormFunction(torch.autograd.Function):
    """z-rule on a parameter-free linear map ``y = f(x)``: ``g_in = J^T (g * y / stab(y))``."""

    @staticmethod
    def forward(ctx, x, fn, epsilon):
        y = fn(x)
        ctx.fn, ctx.x, ctx.scale = fn, x, ratio(y, y, epsilon)
        return y

    @staticmethod
    def backward(ctx, grad):
        with torch.enable_grad():
            x = ctx.x.detach().requires_grad_()
            (grad_in,) = torch.autograd.grad(ctx.fn(x), x, grad * ctx.scale)
        del ctx.x, ctx.scale
        return grad_in, None, None


class _SumFunction(torch.autograd.Function):
    """z-rule on ``a + b``: each summand gets ``a * R / stab(a + b)``."""

    @staticmethod
    def forward(ctx, a, b, epsilon, inplace):
        z = a.add_(b) if inplace else a + b
        if inplace:
            ctx.mark_dirty(a)
        ctx.scale = ratio(z, z, epsilon)
        ctx.shapes = (a.shape, b.shape if isinstance(b, Tensor) else None)
        return z

    @staticmethod
    def backward(ctx, grad):
        g = grad * ctx.scale
        del ctx.scale
        sa, sb = ctx.shapes
        return g.sum_to_size(sa), None if sb is None else g.sum_to_size(sb), None, None


class Norm(Rule):
    """The z-rule without parameters (Zennit's ``Norm``) for average pooling and elementwise sums.

    Each input gets ``x_i * dy/dx_i * R / stab(y)``: an average pool shares relevance in
    proportion to the pooled values, and a residual sum ``a + b`` in proportion to ``a`` and
    ``b``. Conserves relevance up to the stabiliser.

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_nonneg("stabilizer", stabilizer)

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward ``x`` through the parameter-free linear ``module`` with the z-rule backward."""
        fn = lambda t: type(module).forward(module, t)  # noqa: E731
        if not x.requires_grad:
            return fn(x)
        return _NormFunction.apply(x, fn, self.stabilizer)

    def add(self, a: Tensor, b: Tensor | float, inplace: bool = False) -> Tensor:
        """``a + b`` (or ``a += b``) with the z-rule backward."""
        return _SumFunction.apply(a, b, self.stabilizer, inplace)


#: Rules that apply to any linear/conv layer, by name (for name-map composites in configs).
RULES: dict[str, type[Rule]] = {
    cls.__name__.lower(): cls
    for cls in (Epsilon, LRP0, ZPlus, AlphaBeta, Gamma, ZBox, WSquare, Flat, Pass, Norm)
}


def make_rule(spec: str | Rule | Sequence, **kwargs: float) -> Rule:
    """A rule from an instance or a registered name such as ``"gamma"``.

    Raises:
        KeyError: for an unknown name, listing the known ones.
    """
    if isinstance(spec, Rule):
        return spec
    if spec not in RULES:
        raise KeyError(f"unknown LRP rule {spec!r}; choose from {sorted(RULES)}")
    return RULES[spec](**kwargs)
