"""Class-token attention: where the class token looks in the last block."""

from __future__ import annotations

from torch import Tensor

from prune.evaluation.methods.base import METHODS
from prune.evaluation.methods.vit_attention import AttentionMap


@METHODS.register("cls_attention")
class ClassTokenAttention(AttentionMap):
    """The last block's attention from the class token to the patches, averaged over heads.

    ``a_p = mean_h softmax(q_cls k^T * scale)_p`` for every patch token ``p`` of the last
    block; the prefix tokens (class and register tokens) are dropped and the rest is not
    renormalised. Every pixel of a patch gets that value
    (:func:`~prune.evaluation.methods.vit_attention.patches_to_pixels`). The "raw attention"
    baseline of the ViT explanation literature (e.g. Chefer et al. 2021).

    The map is non-negative and the same for every ``target``. Needs a Vision Transformer with
    a class token (``prune.models.ViT`` or timm's ``VisionTransformer``); any other model is
    refused with a one-line ``ConfigError``.
    """

    name = "cls_attention"

    def patch_values(self, maps: list[Tensor], prefix: int) -> Tensor:
        """The last block's head-averaged class-token row over the patch tokens, ``(B, P)``."""
        return maps[-1].mean(1)[:, 0, prefix:]
