"""Attention criterion: how sharply each head attends (head confidence, Voita et al. 2019)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check
from prune.pruning.criteria._backprop import evaluated
from prune.pruning.criteria.base import (
    NORMALIZE_CHECK,
    Batches,
    Criterion,
    layer_norm,
    normalize_layer,
)
from prune.pruning.groups import ChannelGroup
from prune.pruning.transformer import heads_of


def attention_weights(attention: nn.Module, qkv: Tensor) -> Tensor:
    """The attention weights ``softmax(q k^T * scale)`` of every head, from ``qkv``'s output.

    Args:
        attention: a module in the layout of :func:`prune.pruning.transformer.is_attention`
            (timm's: its per-head ``q_norm`` and ``k_norm`` applied).
        qkv: ``(B, N, 3 * H * Dh)`` output of its ``qkv`` layer.

    Returns:
        ``(B, H, N, N)``: for each head and query token, its weights over the keys.
    """
    b, n, _ = qkv.shape
    h, dh = heads_of(attention), attention.head_dim
    scale = getattr(attention, "scale", dh**-0.5)
    q, k, _v = qkv.reshape(b, n, 3, h, dh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, Dh)
    q_norm, k_norm = (getattr(attention, a, None) or nn.Identity() for a in ("q_norm", "k_norm"))
    return ((q_norm(q) @ k_norm(k).transpose(-2, -1)) * scale).softmax(dim=-1)


class AttentionCriterion(Criterion):
    """Head confidence (Voita et al. 2019): a head's largest attention weight per query token,
    averaged over the tokens and the samples.

    The attention weights themselves as the baseline for head importance: a confident head
    puts most of each query's weight on one token; a head that spreads its weight evenly
    scores low. The weights are recomputed from ``qkv``'s output, so fused attention
    (``scaled_dot_product_attention``, which never forms them) is scored the same. Heads only;
    needs batches (labels unused). The model runs in eval mode without gradients.

    Args:
        normalize: divide each attention module's scores by their L1 norm ("l2": their L2
            norm, false: none; confidences already lie in [1/N, 1] in every layer).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"batches"})
    targets: ClassVar[frozenset[str]] = frozenset({"heads"})
    config_checks: ClassVar[dict[str, Check]] = {"normalize": NORMALIZE_CHECK}

    def __init__(self, normalize: bool | str = True) -> None:
        self.normalize = layer_norm(normalize)

    def head_scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Batches
    ) -> dict[str, Tensor]:
        """``{attention: (heads,)}`` mean confidence, normalised per attention module."""
        attentions = {g.name: model.get_submodule(g.name) for g in groups}
        totals: dict[str, Tensor] = {}
        count = 0

        def recorder(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _args: object, out: Tensor) -> None:
                weights = attention_weights(attentions[name], out.detach())
                confidence = weights.amax(-1).to(torch.float64).mean(-1).sum(0)  # (H,)
                totals[name] = totals[name] + confidence if name in totals else confidence

            return hook

        handles = [a.qkv.register_forward_hook(recorder(n)) for n, a in attentions.items()]
        try:
            with evaluated(model), torch.no_grad():
                for x, _y in batches:
                    model(x)
                    count += x.shape[0]
        finally:
            for h in handles:
                h.remove()
        if count == 0:
            raise ValueError("AttentionCriterion got no samples in batches")
        return {n: normalize_layer(totals[n] / count, self.normalize) for n in attentions}
