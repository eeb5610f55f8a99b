"""Attention rollout: how much each patch flows into the class token through all blocks."""

from __future__ import annotations

import torch
from torch import Tensor

from prune.evaluation.methods.base import METHODS
from prune.evaluation.methods.vit_attention import AttentionMap


@METHODS.register("attention_rollout")
class AttentionRollout(AttentionMap):
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying attention flow in transformers").

    Per block ``l`` the heads' attention is averaged, the identity is added for the residual
    connection and each row is normalised to sum 1: ``Â_l = rownorm(mean_h A_l + I)``. The
    rollout is the product over blocks, ``Â_L ... Â_2 Â_1``; its class-token row without the
    prefix tokens (class and register tokens) gives one value per patch, and every pixel of a
    patch gets that value
    (:func:`~prune.evaluation.methods.vit_attention.patches_to_pixels`).

    The map is non-negative and the same for every ``target``. Needs a Vision Transformer with
    a class token (``prune.models.ViT`` or timm's ``VisionTransformer``); any other model is
    refused with a one-line ``ConfigError``.
    """

    name = "attention_rollout"

    def patch_values(self, maps: list[Tensor], prefix: int) -> Tensor:
        """The class token's row of the rollout over the patch tokens, ``(B, P)``."""
        b, _, n, _ = maps[0].shape
        eye = torch.eye(n, dtype=maps[0].dtype, device=maps[0].device)
        rollout = eye.expand(b, n, n)
        for attention in maps:
            mixed = attention.mean(1) + eye
            rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
        return rollout[:, 0, prefix:]
