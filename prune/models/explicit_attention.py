"""``nn.MultiheadAttention``'s self-attention written out, so that its heads can be cut.

torchvision's ``VisionTransformer`` runs each block's attention through
``nn.MultiheadAttention``, whose heads live inside one fused op: a head can be neither read nor
removed. :func:`explicit_attention` swaps each batch-first self-attention
``nn.MultiheadAttention`` of a model for a :class:`SelfAttention`, which is
:class:`prune.models.vit.Attention` (``qkv``, ``proj``, ``heads``, ``head_dim``, ``heads_out``)
with the same weights and fused attention (``scaled_dot_product_attention``, as
``nn.MultiheadAttention`` runs it), called as the module it replaces. The outputs agree up to
float rounding; the ``state_dict`` keys of those modules change (``in_proj_weight`` becomes
``qkv.weight``, ``out_proj`` becomes ``proj``), so a model is converted before it is trained
or saved (``TorchvisionNet(explicit_attention=True)``, ``model.explicit_attention=true``).

    explicit_attention(vit)   # ['encoder.layers.encoder_layer_0.self_attention', ...]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.errors import ConfigError
from prune.models.vit import Attention


class SelfAttention(Attention):
    """:class:`prune.models.vit.Attention` called as ``nn.MultiheadAttention`` is for
    self-attention: ``out, weights = attention(x, x, x, need_weights=False)``, ``weights``
    None. Anything else (another key or value, masks, the weights) is refused."""

    def forward(  # type: ignore[override]
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, None]:
        """``(out, None)``; the options are ``nn.MultiheadAttention``'s, by keyword: no mask is
        taken, and ``average_attn_weights`` is ignored (no weights are returned)."""
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise ValueError("SelfAttention attends a sequence to itself: key and value are query")
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise ValueError("SelfAttention takes no key_padding_mask, attn_mask or is_causal")
        if need_weights:  # nn.MultiheadAttention's default: a caller may use the weights
            raise ValueError(
                "SelfAttention returns no attention weights; call it with need_weights=False"
            )
        return super().forward(query), None


def _refusal(mha: nn.MultiheadAttention) -> str | None:
    """Why ``mha`` cannot become a :class:`SelfAttention`, or None."""
    if not mha.batch_first:
        return "it is not batch-first"
    if not mha._qkv_same_embed_dim or mha.kdim != mha.embed_dim or mha.vdim != mha.embed_dim:
        return "its keys and values have their own widths"
    if mha.bias_k is not None or mha.add_zero_attn:
        return "it adds a key bias or a zero attention"
    if mha.dropout:
        return f"it drops attention weights (dropout={mha.dropout})"
    if mha.in_proj_bias is None or mha.out_proj.bias is None:
        return "it has no projection biases"
    return None


def explicit_attention(model: nn.Module) -> list[str]:
    """Replace every ``nn.MultiheadAttention`` of ``model`` by a :class:`SelfAttention` with
    its weights, in place; the names of the modules replaced.

    Raises:
        ConfigError: in one line naming the module, for one that is not batch-first
            self-attention with the default options (no dropout, projection biases, no key
            bias, no separate key or value widths).
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    for name, mha in found:
        if (reason := _refusal(mha)) is not None:
            raise ConfigError(f"{name!r} ({type(mha).__name__}) cannot be written out: {reason}")
    for name, mha in found:
        heads = mha.num_heads
        new = SelfAttention(mha.embed_dim, heads, mha.embed_dim // heads, fused=True)
        new = new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        with torch.no_grad():
            new.qkv.weight.copy_(mha.in_proj_weight)
            new.qkv.bias.copy_(mha.in_proj_bias)
            new.proj.weight.copy_(mha.out_proj.weight)
            new.proj.bias.copy_(mha.out_proj.bias)
        new.train(mha.training)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, new)
    return [name for name, _ in found]
