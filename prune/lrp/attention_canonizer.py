"""``nn.MultiheadAttention`` written out for LRP: the self-attention of torchvision's ViT.

``nn.MultiheadAttention`` runs as one fused op (``F.multi_head_attention_forward``) that no
rule can see into. :class:`ExplicitMultiheadAttention` gives each such module, for the pass
only, an equivalent forward in the layout of :class:`prune.models.vit.Attention`: one linear
projection ``x -> (q, k, v)`` with the module's ``in_proj_weight`` and ``in_proj_bias``,
``softmax(q k^T * scale) v`` per head, the heads concatenated and the module's own
``out_proj``. The products, the scale and the softmax then get the composite's ``op_map``
rules and both projections the rule of linear layers, as in the project's ViT.

The projection is a stand-in ``nn.Linear`` that holds the module's parameters (the same
``Parameter`` objects, bound again at every call and, for a traced program, by the engine before
every pass); the model itself is never changed. The
canonizer covers the call of torchvision's ``EncoderBlock``, ``attn(x, x, x,
need_weights=False)`` with ``batch_first=True``; any other use stops with one line that names
the module and what is not covered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch.fx
from torch import Size, Tensor, nn

from prune.lrp.canonizers import Canonizer
from prune.lrp.errors import UnsupportedLayerError

#: What the explicit forward covers, for the refusal messages.
COVERED = (
    "self-attention attn(x, x, x, need_weights=False) on (B, N, E) inputs with batch_first=True, "
    "no masks, equal kdim/vdim, no add_bias_kv or add_zero_attn, dropout only in eval mode"
)


class ExplicitSelfAttention(nn.Module):
    """The forward of one ``nn.MultiheadAttention`` as explicit products (see the module doc).

    Its only submodule, ``in_proj``, is a linear layer on the attention's ``in_proj_weight`` and
    ``in_proj_bias`` (rows ordered ``(3, heads, head_dim)`` as ``prune.models.vit``'s ``qkv``);
    the attention itself is held as a plain attribute, not a submodule, so that walking this
    stand-in finds the projection alone.

    Args:
        name: the attention's qualified name (for messages).
        attention: the ``nn.MultiheadAttention`` whose forward this computes.
    """

    def __init__(self, name: str, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        embed, bias = attention.embed_dim, attention.in_proj_bias is not None
        self.name, self.scale = name, attention.head_dim**-0.5
        self.__dict__["attention"] = attention  # not a submodule: its out_proj is the model's
        self.in_proj = nn.Linear(embed, 3 * embed, bias=bias, device="meta")
        self.bind()

    def bind(self) -> None:
        """Point ``in_proj`` at the attention's current projection parameters (the engine calls
        it before each pass of a traced program, which does not run this forward)."""
        self.in_proj._parameters["weight"] = self.attention.in_proj_weight
        self.in_proj._parameters["bias"] = self.attention.in_proj_bias

    def refuse(self, what: str) -> UnsupportedLayerError:
        """The one-line error for a use of the attention that the explicit forward does not
        cover."""
        return _refusal(self.name, what)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, None]:
        """``(output, None)`` as ``nn.MultiheadAttention`` returns for ``need_weights=False``."""
        attention = self.attention
        if key is not query or value is not query:
            raise self.refuse("key or value other than the query (cross-attention)")
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise self.refuse("a mask (key_padding_mask, attn_mask or is_causal)")
        if need_weights:
            raise self.refuse("need_weights=True (call it with need_weights=False)")
        if attention.training and attention.dropout > 0:
            raise self.refuse(f"dropout={attention.dropout} in training mode")
        _check_tokens(query.shape, self.name)  # a graph node when traced: checked every pass
        self.bind()
        b, n, e = query.shape
        heads, head_dim = attention.num_heads, attention.head_dim
        qkv = self.in_proj(query).reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, Dh) each
        scores = (q @ k.transpose(-2, -1)) * self.scale
        out = scores.softmax(dim=-1) @ v
        out = out.transpose(1, 2).reshape(b, n, e)
        return attention.out_proj(out), None


def _refusal(name: str, what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"LRP cannot explain {name!r} (MultiheadAttention) with {what}; its explicit "
        f"forward covers {COVERED}"
    )


def _check_tokens(shape: Size, name: str) -> None:
    """Refuse an input that is not ``(B, N, E)``."""
    if len(shape) != 3:
        raise _refusal(name, f"an input of shape {tuple(shape)}")


# a call in a traced graph, not traced into: the check then runs on every pass's real shape
torch.fx.wrap("_check_tokens")


class ExplicitMultiheadAttention(Canonizer):
    """Run every ``nn.MultiheadAttention`` as :class:`ExplicitSelfAttention` during the pass.

    The transformer composites (``attnlrp``, ``cp_lrp``, ``abslrp``) list it, so torchvision's
    ``VisionTransformer`` is explained like :class:`prune.models.ViT` without asking. Settings
    that the explicit forward cannot reproduce (``batch_first=False``, ``kdim``/``vdim`` other
    than ``embed_dim``, ``add_bias_kv``, ``add_zero_attn``) stop when the engine is built;
    unsupported calls (masks, cross-attention, ``need_weights=True``, dropout in training
    mode) stop when they happen, each with one line.
    """

    def replacements(
        self, modules: Sequence[tuple[str, nn.Module, bool]]
    ) -> dict[nn.Module, Callable[..., Any]]:
        """``{attention: its stand-in}`` (an :class:`ExplicitSelfAttention`) for each
        ``nn.MultiheadAttention`` of ``modules``."""
        out: dict[nn.Module, Callable[..., Any]] = {}
        for name, module, _ in modules:
            if isinstance(module, nn.MultiheadAttention):
                standin = ExplicitSelfAttention(name or "<root>", module)
                _check_settings(standin, module)
                out[module] = standin
        return out


def _check_settings(standin: ExplicitSelfAttention, attention: nn.MultiheadAttention) -> None:
    """Refuse the settings of ``attention`` that its explicit forward does not reproduce."""
    if not attention.batch_first:
        raise standin.refuse("batch_first=False")
    if not attention._qkv_same_embed_dim:
        raise standin.refuse(
            f"kdim={attention.kdim}, vdim={attention.vdim} (embed_dim={attention.embed_dim})"
        )
    if attention.bias_k is not None:
        raise standin.refuse("add_bias_kv=True")
    if attention.add_zero_attn:
        raise standin.refuse("add_zero_attn=True")
