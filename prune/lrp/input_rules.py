"""LRP rules for the first layer, whose input relevance is not proportional to the input.

z^B (box) for bounded pixels, w^2 and flat for unbounded inputs: they return the relevance
itself when they read the model input (see :mod:`prune.lrp.core`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.core import LinearRule, check_nonneg, divide_by_input, negative, positive, ratio


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
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def forward_impl(self, op, x, weight, bias, root):
        low, high = _bound(self.low, x), _bound(self.high, x)
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        z = op.forward(x, weight, bias)
        den = z - op.forward(low, wp, positive(bias)) - op.forward(high, wn, negative(bias))
        return z, (ratio(z, den, self.stabilizer), weight, wp, wn, x, low, high)

    def backward_impl(self, op, saved, grad, root, like):
        _, weight, wp, wn, x, low, high = saved
        c = grad  # arrives scaled (see LinearRule.output_scale)
        t_w, t_p, t_n = op.transpose_blocks([c], [[weight, wp, wn]], like)
        rel = x * t_w - low * t_p - high * t_n
        return rel if root else divide_by_input(rel, x)


class WSquare(LinearRule):
    """LRP-w^2 (Montavon et al. 2017): ``R_i = sum_j w_ij^2 / sum_i w_ij^2 R_j``, ignores ``x``.

    For a first layer with unbounded inputs. Like Zennit, the bias is squared too and absorbs
    its share. Relevance does not depend on the input values, so it cannot rank pixels.

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def _weights(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return weight.square(), None if bias is None else bias.square()

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        w2, b2 = self._weights(weight, bias)
        den = op.forward(x.new_ones(1, *x.shape[1:]), w2, b2)
        return z, (ratio(z, den, self.stabilizer), w2, None if root else x)

    def backward_impl(self, op, saved, grad, root, like):
        _, w2, x = saved  # grad arrives scaled (see LinearRule.output_scale)
        rel = op.transpose(grad, w2, like)
        return rel if root else divide_by_input(rel, x)


class Flat(WSquare):
    """LRP-flat (Lapuschkin et al. 2019): spread relevance uniformly over the receptive field.

    ``w^2`` with all weights one and no bias. First layer only; makes input relevance useless for
    input pruning (every pixel of a receptive field gets the same share).

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def _weights(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return torch.ones_like(weight), None
