"""absLRP, relative absolute magnitude propagation (Vukadin et al. 2024), as a composite."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from prune.checks import Check, boolean
from prune.lrp.composites.base import COMPOSITES, LayerMap
from prune.lrp.composites.transformer import transformer_canonizers
from prune.lrp.rules import (
    AbsActivation,
    AbsBatchNorm,
    AbsLayerNorm,
    AbsLinear,
    AbsNorm,
    AbsProduct,
    AbsSoftmax,
    AbsSum,
    Pass,
)
from prune.lrp.rules.transformer import Attention
from prune.lrp.types import ACTIVATION_TYPES, AVGPOOL_TYPES, BATCHNORM_TYPES, LINEAR_TYPES


@COMPOSITES.register("abslrp")
class AbsLRP(LayerMap):
    """absLRP, relative absolute magnitude propagation (Vukadin et al. 2024).

    See :mod:`prune.lrp.rules.abslrp`.

    Every linear, conv, BatchNorm (kept as its own layer), average pool and activation uses the
    absolute rule with per-sample L1 rescaling; residual sums rescale each branch separately. In
    transformers LayerNorm, the softmax and both factors of the attention products take it too
    (also inside ``scaled_dot_product_attention``). The result is the contrastive map: the map of
    the target minus the map of all other classes.

    Args:
        contrastive: subtract the map of all other classes (the paper's default).
    """

    config_checks: ClassVar[dict[str, Check]] = {"contrastive": boolean()}

    def __init__(self, contrastive: bool = True) -> None:
        product, softmax = AbsProduct(), AbsSoftmax()
        layer_map = [
            ((nn.ReLU,), Pass()),  # the absolute rule on a ReLU is the pass rule, rescaled
            (ACTIVATION_TYPES, AbsActivation()),
            (LINEAR_TYPES, AbsLinear()),
            (BATCHNORM_TYPES, AbsBatchNorm()),
            (AVGPOOL_TYPES, AbsNorm()),
            ((nn.LayerNorm,), AbsLayerNorm()),
            ((nn.Softmax,), softmax),
        ]
        op_map = {
            "add": AbsSum(),
            "mean": AbsNorm(),
            "mul": product,
            "matmul": product,
            "softmax": softmax,
            "layer_norm": AbsLayerNorm(),
            "scaled_dot_product_attention": Attention(product, softmax),
        }
        super().__init__(layer_map, canonizers=transformer_canonizers(merge=False), op_map=op_map)
        self.contrastive = contrastive
        self.num_maps = 2 if contrastive else 1

    def seeds(self, logits: Tensor, relevance: Tensor) -> list[tuple[float, Tensor]]:
        """Unit-sum one-hot relevance, and unit-sum relevance on all other classes (subtracted).

        ``relevance`` should sit on one class per sample (a class index or a one-hot target):
        an output relevance on several classes (softmax gradient, margin) becomes a mix of
        them, normalised to sum 1, and its "other classes" are the remaining ones."""
        target = relevance.abs()
        target = target / target.sum(1, keepdim=True).clamp_min(1e-30)
        if not self.contrastive:
            return [(1.0, target)]
        rest = (target == 0).to(target)
        rest = rest / rest.sum(1, keepdim=True).clamp_min(1e-30)
        return [(1.0, target), (-1.0, rest)]

    def __repr__(self) -> str:
        return f"AbsLRP(contrastive={self.contrastive})"
