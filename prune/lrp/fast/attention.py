"""The kernel of ``scaled_dot_product_attention`` (:class:`prune.lrp.rules.transformer.Attention`).

The op is written out as ``A = softmax(q k^T * scale + mask)``, ``out = A v``, each product and
the softmax run by the kernel of its own rule; where either rule has no kernel, the attention
runs its reference form. The scale and an additive mask pass relevance unchanged (their
gradient), a boolean mask takes none.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.fast.base import Kernel
from prune.lrp.fast.registry import kernel, kernel_for
from prune.lrp.rules.base import Rule
from prune.lrp.rules.transformer import Attention


def attention_options(args: tuple, kwargs: dict) -> dict | None:
    """The options of a ``scaled_dot_product_attention`` call, or None for ones not covered
    (dropout, grouped-query attention)."""
    names = ("attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    options = {**dict(zip(names, args[3:], strict=False)), **kwargs}
    if set(options) - set(names) or options.get("dropout_p") or options.get("enable_gqa"):
        return None
    return options


def attention_scores(q: Tensor, product: Tensor, options: dict) -> Tensor:
    """``product`` (``q @ k^T``) scaled and masked as ``scaled_dot_product_attention`` does."""
    scores = product * (options.get("scale") or q.shape[-1] ** -0.5)
    mask = options.get("attn_mask")
    if options.get("is_causal"):
        n, m = scores.shape[-2:]
        mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril()
    if mask is not None and mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores if mask is None else scores + mask


@kernel(Attention)
class AttentionKernel(Kernel):
    """The attention written out, each step by its rule's kernel."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.products, self.softmaxes = kernel_for(rule.product), kernel_for(rule.softmax)

    def op(self, name, args, kwargs, inplace, run):
        """``scaled_dot_product_attention(q, k, v, ...)`` with the rules' backward."""
        if name != "scaled_dot_product_attention" or self.products is None:
            return None
        options = attention_options(args, kwargs)
        if options is None or self.softmaxes is None:
            return None
        q, k, v = args[:3]
        product = self.products.op("matmul", (q, k.transpose(-2, -1)), {}, False, run)
        if product is None:
            return None
        scores = attention_scores(q, product, options)
        attn = self.softmaxes.op("softmax", (scores, -1), {}, False, run)
        return None if attn is None else self.products.op("matmul", (attn, v), {}, False, run)
