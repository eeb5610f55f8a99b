"""LRP rules for the first layer, whose input relevance is not proportional to the input."""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.rules.base import Layer, LinearRule, check_nonneg, negative, positive, ratio


def box_bound(value: float | Tensor, x: Tensor) -> Tensor:
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

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        low, high = box_bound(self.low, x), box_bound(self.high, x)
        w, b = layer.weight, layer.bias
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        z = layer(x) - layer.forward(low, wp, positive(b)) - layer.forward(high, wn, negative(b))
        s = ratio(relevance, z, self.stabilizer)
        t_w, t_p, t_n = (layer.transpose(s, v) for v in (w, wp, wn))
        return x * t_w - low * t_p - high * t_n


class WSquare(LinearRule):
    """LRP-w^2 (Montavon et al. 2017): ``R_i = sum_j w_ij^2 / sum_i w_ij^2 R_j``, ignores ``x``.

    For a first layer with unbounded inputs. Like Zennit, the bias is squared too and absorbs
    its share. Relevance does not depend on the input values, so it cannot rank pixels.

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def weights(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The weights whose contributions share the relevance: ``w^2`` and ``b^2``."""
        return weight.square(), None if bias is None else bias.square()

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        w, b = self.weights(layer.weight, layer.bias)
        z = layer.forward(x.new_ones(1, *x.shape[1:]), w, b)
        return layer.transpose(ratio(relevance, z, self.stabilizer), w)


class Flat(WSquare):
    """LRP-flat (Lapuschkin et al. 2019): spread relevance uniformly over the receptive field.

    ``w^2`` with all weights one and no bias. First layer only; makes input relevance useless for
    input pruning (every pixel of a receptive field gets the same share).

    Args:
        stabilizer: added to the denominator with its sign, >= 0.
    """

    def weights(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """All ones, no bias."""
        return torch.ones_like(weight), None
