"""The rule of a gated product ``x * gate``: the gate held constant, all relevance to ``x``.

A squeeze-and-excitation block (Hu et al. 2018; in EfficientNet, MobileNetV3, RegNetY) scales
each channel of a feature map ``x`` of shape ``(N, C, H, W)`` by a gate computed from ``x``
itself, ``s = sigmoid(W2 act(W1 mean_hw(x)))`` of shape ``(N, C, 1, 1)``, broadcast over the
spatial axes: ``y = x * s``. With the gate held constant the product is linear in ``x``, and any
of the linear rules on ``y = s x`` gives ``R_x = s x R / (s x) = R``: the gated feature map takes
all relevance and the gate's branch none. LRP for LSTMs treats its gates so (Arras et al. 2017:
the gate gets no relevance, the signal all of it), and CP-LRP holds the attention weights
constant the same way (:class:`~prune.lrp.rules.HeldConstant`).

Other libraries: Zennit has no rule for a product of two activations. The relevance it passes
backward then goes through the product as a gradient: ``x`` receives ``s R`` and the gate the
sum of ``x R`` over the spatial axes, so relevance is not conserved at a gate. LXT's ``mul2``
(AttnLRP's uniform rule, :class:`~prune.lrp.rules.Uniform`) gives each of two equally shaped
factors half, as in the gated MLPs of language models; this rule does the same where both
factors have the output's shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from prune.lrp.rules.base import Op, Rule


def takers(shapes: Sequence[torch.Size], out_shape: torch.Size) -> list[int]:
    """Positions of the factors that take relevance: those of the output's full shape, or all
    of them where none has it (``(N, C, 1, 1) * (N, 1, H, W)``)."""
    full = [i for i, shape in enumerate(shapes) if shape == out_shape]
    return full or list(range(len(shapes)))


class Gate(Rule):
    """An elementwise product with its broadcast factors (gates) held constant.

    For ``y = a * b`` the factors of the output's full shape share its relevance evenly, ``R / k``
    each for ``k`` such factors; a factor broadcast to the output (the ``(N, C, 1, 1)`` gate of
    squeeze-and-excitation) is held constant and gets none, so no relevance enters the gate's
    branch. Two factors of the full shape (a GLU) get half each, as AttnLRP's uniform rule gives
    them; where no factor has the full shape, all share it, each summed over the axes it is
    broadcast along. A product with one factor that needs relevance (``x * 0.5``, ``x * mask``)
    passes the relevance to it unchanged. Conserves relevance exactly, without a stabiliser.

    The gate is told by its shape alone: where the feature map is down to 1x1 (a small input deep
    in a network: MobileNetV3's last blocks on 32x32 images), gate and feature map have the same
    shape and share the relevance evenly, as a GLU's factors do; the gate's branch then carries
    half of it, and relevance is still conserved.

    Used for the ``mul`` op of the presets (:mod:`prune.lrp.composites`).
    """

    def relevance(self, layer: Op, *inputs: Tensor, relevance: Tensor) -> tuple[Tensor, ...]:
        take = takers([x.shape for x in inputs], relevance.shape)
        share = relevance / len(take)
        return tuple(
            share.sum_to_size(x.shape) if i in take else torch.zeros_like(x)
            for i, x in enumerate(inputs)
        )
