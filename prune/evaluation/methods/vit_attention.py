"""A Vision Transformer's attention weights, read without changing the model, and its patch grid.

:class:`AttentionMap` is the base of the methods that read a ViT's attention
(:mod:`~prune.evaluation.methods.attention_rollout`,
:mod:`~prune.evaluation.methods.cls_attention`). A forward hook on each attention's ``qkv``
projection recomputes the attention from the projection's output, laid out
``(B, N, 3, heads, head_dim)`` as in :class:`prune.models.vit.Attention` and timm's
``Attention``: ``softmax(q k^T * scale)`` per head, with timm's ``q_norm`` / ``k_norm`` applied
first. The model's own forward runs unchanged, its fused or explicit attention alike.

Supported: :class:`prune.models.ViT`, timm's ``VisionTransformer`` with a class token (its
register tokens, if any, follow the class token) and torchvision's ``VisionTransformer`` with
its attention written out (:func:`prune.models.explicit_attention.explicit_attention`), alone
or wrapped (``TimmNet``, ``TorchvisionNet``); tokens after the prefix are the patches in
row-major order.
"""

from __future__ import annotations

import math
import sys
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prune.errors import ConfigError
from prune.evaluation.methods.base import AttributionMethod
from prune.models.explicit_attention import SelfAttention
from prune.models.vit import ViT
from prune.pruning.criteria.attention import attention_weights

#: what the attention-based methods accept, for the refusal message
SUPPORTED = (
    "prune.models.ViT, timm's VisionTransformer with a class token, or torchvision's with "
    "model.explicit_attention=true"
)


@dataclass(frozen=True)
class TokenLayout:
    """Where a ViT's attention modules are and how its tokens map to the image.

    Attributes:
        attentions: the attention module of every block, in forward order; each has a ``qkv``
            ``nn.Linear``, a ``head_dim`` and a ``scale``.
        prefix: tokens before the patches; the class token is the first.
        patch_size: ``(height, width)`` of a patch in pixels.
    """

    attentions: tuple[nn.Module, ...]
    prefix: int
    patch_size: tuple[int, int]


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _own_vit(net: ViT) -> TokenLayout:
    attentions = tuple(b.attn for b in net.blocks)
    return TokenLayout(attentions, 1, _pair(net.patch_embed.stride))


def _timm_vit(net: nn.Module) -> TokenLayout | None:
    """The layout of a timm ``VisionTransformer`` with a class token and timm ``Attention``
    in every block; None for anything else."""
    if "timm" not in sys.modules:  # a timm model exists only once timm is imported
        return None
    from timm.layers import Attention
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(net, VisionTransformer) or net.cls_token is None:
        return None
    attentions = tuple(getattr(b, "attn", None) for b in net.blocks)
    if not all(isinstance(a, Attention) and isinstance(a.qkv, nn.Linear) for a in attentions):
        return None
    patch = _pair(net.patch_embed.patch_size)
    return TokenLayout(attentions, int(net.num_prefix_tokens), patch)


def _torchvision_vit(net: nn.Module) -> TokenLayout | None:
    """The layout of a torchvision ``VisionTransformer`` whose every block's attention is
    written out (:class:`prune.models.explicit_attention.SelfAttention`); None for anything
    else (its own ``nn.MultiheadAttention`` has no ``qkv`` to read)."""
    if "torchvision" not in sys.modules:
        return None
    from torchvision.models.vision_transformer import VisionTransformer

    if not isinstance(net, VisionTransformer):
        return None
    attentions = tuple(layer.self_attention for layer in net.encoder.layers)
    if not all(isinstance(a, SelfAttention) for a in attentions):
        return None
    return TokenLayout(attentions, 1, _pair(net.patch_size))


def token_layout(model: nn.Module, method: str) -> TokenLayout:
    """The layout of the one Vision Transformer that ``model`` is or wraps.

    Args:
        model: a :class:`prune.models.ViT`, a timm ``VisionTransformer`` with a class token, a
            torchvision one with its attention written out, or a module holding exactly one of
            them (e.g. ``prune.models.TimmNet``).
        method: the method's name, for the refusal message.

    Raises:
        ConfigError: for any other model, in one line naming the method and the model.
    """
    found = []
    for module in model.modules():
        layout = _own_vit(module) if isinstance(module, ViT) else _timm_vit(module)
        layout = layout or _torchvision_vit(module)
        if layout is not None:
            found.append(layout)
    if len(found) != 1:
        what = "several Vision Transformers" if found else type(model).__name__
        raise ConfigError(
            f"attribution method {method!r} needs a Vision Transformer ({SUPPORTED}), "
            f"got {what}; choose a gradient or LRP method for this model"
        )
    return found[0]


def _attention_hook(
    attention: nn.Module, maps: list[Tensor]
) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
    """A forward hook for ``attention.qkv`` that appends the block's attention ``(B, H, N, N)``
    (:func:`prune.pruning.criteria.attention.attention_weights`: the head count read at every
    forward, so a model whose heads were pruned is read right)."""

    def hook(_: nn.Module, __: tuple[Tensor, ...], qkv: Tensor) -> None:
        maps.append(attention_weights(attention, qkv))

    return hook


@torch.no_grad()
def attention_maps(model: nn.Module, x: Tensor, layout: TokenLayout) -> list[Tensor]:
    """The softmax attention of every block for inputs ``x``: one ``(B, heads, N, N)`` per block.

    Runs one forward pass of ``model`` with a hook on each ``qkv`` projection of ``layout``;
    the hooks are removed afterwards, also when the forward fails.
    """
    maps: list[Tensor] = []
    handles = [a.qkv.register_forward_hook(_attention_hook(a, maps)) for a in layout.attentions]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    if len(maps) != len(layout.attentions):
        raise RuntimeError(
            f"expected one attention map per block ({len(layout.attentions)}), recorded "
            f"{len(maps)}: the model must call each block's qkv projection once per forward"
        )
    return maps


def patches_to_pixels(values: Tensor, x: Tensor, layout: TokenLayout) -> Tensor:
    """Spread one value per patch over the image: ``(B, P)`` -> shaped like ``x``.

    Every pixel of a patch gets the patch's value, split equally over the channels, so the
    channel sum of each pixel (what the removal metrics rank) is its patch's value. A grid
    that overhangs the image (a padded last patch) is cropped.

    Args:
        values: one value per patch token, row-major over the patch grid.
        x: the images ``(B, C, H, W)`` the tokens come from.
        layout: the model's layout (its patch size).
    """
    b, c, h, w = x.shape
    ph, pw = layout.patch_size
    gh, gw = math.ceil(h / ph), math.ceil(w / pw)
    if values.shape[1] != gh * gw:
        raise RuntimeError(
            f"{values.shape[1]} patch tokens do not fill the {gh}x{gw} grid of {ph}x{pw} "
            f"patches of a {h}x{w} image"
        )
    grid = values.reshape(b, 1, gh, gw).repeat_interleave(ph, 2).repeat_interleave(pw, 3)
    return (grid[..., :h, :w] / c).expand(b, c, h, w).to(x.dtype)


class AttentionMap(AttributionMethod):
    """Base of the methods that read a Vision Transformer's attention.

    :meth:`attribute` records every block's attention (:func:`attention_maps`), asks the
    subclass for one value per patch token (:meth:`patch_values`) and spreads them over the
    patches' pixels (:func:`patches_to_pixels`). Such a map does not depend on ``target``.
    Models other than a Vision Transformer with a class token are refused with a
    :class:`~prune.errors.ConfigError` (:meth:`check_model` checks a model before any work).
    """

    def check_model(self, model: nn.Module) -> None:
        """Raise a one-line ``ConfigError`` unless this method can explain ``model``."""
        token_layout(model, self.name)

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return the subclass's patch values, each spread over its patch's pixels."""
        if x.dim() != 4:
            raise ValueError(f"{self.name} needs images (B, C, H, W), got shape {tuple(x.shape)}")
        layout = token_layout(model, self.name)
        values = self.patch_values(attention_maps(model, x, layout), layout.prefix)
        return patches_to_pixels(values, x, layout)

    @abstractmethod
    def patch_values(self, maps: list[Tensor], prefix: int) -> Tensor:
        """One value per patch token ``(B, P)`` from the attention ``(B, H, N, N)`` of every
        block, in forward order; the first ``prefix`` tokens are the class (and register)
        tokens."""
