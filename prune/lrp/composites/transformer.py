"""Composites for transformers: AttnLRP (Achtibat et al. 2024) and CP-LRP (Ali et al. 2022)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from prune.checks import Check, finite_number
from prune.lrp.attention_canonizer import ExplicitMultiheadAttention
from prune.lrp.canonizers import Canonizer, MergeBatchNorm
from prune.lrp.composites.base import COMPOSITES, STABILIZER_CHECKS, LayerMap, default_op_map
from prune.lrp.layer_scale_canonizer import ExplicitLayerScale
from prune.lrp.rules import Epsilon, Gamma, Norm, Pass, Rule
from prune.lrp.rules.transformer import (
    Attention,
    HeldConstant,
    LayerNormIdentity,
    SoftmaxTaylor,
    Uniform,
)
from prune.lrp.types import ACTIVATION_TYPES, AVGPOOL_TYPES, LINEAR_TYPES

#: ... and of the transformer composites, whose linear layers may take gamma instead of epsilon.
TRANSFORMER_CHECKS: dict[str, Check] = {
    **STABILIZER_CHECKS,
    "gamma": finite_number(0, nullable=True),
}


@COMPOSITES.register("attnlrp")
class AttnLRP(LayerMap):
    """AttnLRP for transformers (Achtibat et al. 2024; the rules of LXT).

    Epsilon on linear and convolutional layers (a BatchNorm merged into the layer before it),
    LayerNorm with its standard deviation held constant, the identity (pass) rule on GELU and
    other activations, the softmax's deep Taylor rule, the uniform rule for the products of
    attention (``q @ k^T``, ``A @ v``, also inside ``scaled_dot_product_attention``) and for
    elementwise products, and the z-rule for residual sums and means.

    Args:
        epsilon: stabiliser of the epsilon and LayerNorm rules.
        stabilizer: stabiliser of the z-rule and the uniform rule.
        gamma: when set, gamma with this value on the linear layers instead of epsilon (a
            choice "Pruning By Explaining Revisited" tunes for pruning).
    """

    config_checks: ClassVar[dict[str, Check]] = TRANSFORMER_CHECKS

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, gamma: float | None = None
    ) -> None:
        layers = _transformer_layers(epsilon, gamma)
        ops = _transformer_ops(epsilon, stabilizer, Uniform(stabilizer))
        super().__init__(layers, canonizers=transformer_canonizers(merge=True), op_map=ops)


@COMPOSITES.register("cp_lrp")
class CPLRP(LayerMap):
    """CP-LRP for transformers (Ali et al. 2022): the attention weights held constant.

    As :class:`AttnLRP`, but a product ``A @ v`` passes all relevance through its last factor,
    the values, and none to the attention weights (the softmax then receives none).

    Args:
        epsilon: stabiliser of the epsilon and LayerNorm rules.
        stabilizer: stabiliser of the z-rule and the products' epsilon rule.
        gamma: as in :class:`AttnLRP`.
    """

    config_checks: ClassVar[dict[str, Check]] = TRANSFORMER_CHECKS

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, gamma: float | None = None
    ) -> None:
        products = HeldConstant(stabilizer)
        layers = _transformer_layers(epsilon, gamma)
        ops = _transformer_ops(epsilon, stabilizer, products)
        super().__init__(layers, canonizers=transformer_canonizers(merge=True), op_map=ops)


def transformer_canonizers(merge: bool) -> list[Canonizer]:
    """``nn.MultiheadAttention`` and timm's LayerScale written out, BatchNorm merged if
    ``merge``."""
    return [
        *([MergeBatchNorm()] if merge else []),
        ExplicitMultiheadAttention(),
        ExplicitLayerScale(),
    ]


def _transformer_ops(epsilon: float, stabilizer: float, products: Rule) -> dict[str, Rule]:
    """A transformer's functional ops; ``products``: the rule of ``q @ k^T`` and ``A @ v``."""
    return {
        **default_op_map(stabilizer),
        "mul": Uniform(stabilizer),
        "matmul": products,
        "softmax": SoftmaxTaylor(),
        "layer_norm": LayerNormIdentity(epsilon),
        "scaled_dot_product_attention": Attention(products, SoftmaxTaylor()),
    }


def _transformer_layers(epsilon: float, gamma: float | None) -> list:
    linear = Epsilon(epsilon) if gamma is None else Gamma(gamma, epsilon)
    return [
        (nn.LayerNorm, LayerNormIdentity(epsilon)),
        (ACTIVATION_TYPES, Pass()),
        (AVGPOOL_TYPES, Norm(epsilon)),
        (LINEAR_TYPES, linear),
        ((nn.Softmax,), SoftmaxTaylor()),
    ]
