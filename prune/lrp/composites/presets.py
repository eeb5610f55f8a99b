"""The presets for MLPs and CNNs, with Zennit's names and mixes (Montavon et al. 2019, sec. 10.3;
Kohlbrenner et al. 2020): epsilon for dense layers, a rule favouring positive contributions for
convolutions, and an optional special first layer. Activations pass relevance through, average
pools, residual sums and means use the z-rule, max-pools winner-takes-all, an elementwise product
holds its gate constant (squeeze-and-excitation); BatchNorm is merged into the layer before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from prune.checks import Check, finite_number
from prune.errors import ConfigError
from prune.lrp.canonizers import Canonizer
from prune.lrp.composites.base import (
    COMPOSITES,
    STABILIZER_CHECKS,
    LayerMap,
    SpecialFirstLayer,
    base_layer_map,
    default_op_map,
)
from prune.lrp.rules import AlphaBeta, Epsilon, Flat, Gamma, Rule, ZBox, ZPlus
from prune.lrp.types import CONV_TYPES, LINEAR_TYPES

#: Box bounds of MNIST pixels in [0, 1] after normalising with mean 0.1307 and std 0.3081.
MNIST_LOW, MNIST_HIGH = -0.4242, 2.8215


@COMPOSITES.register("epsilon")
class EpsilonOnly(LayerMap):
    """LRP-epsilon on every linear and convolutional layer (Bach et al. 2015).

    Closest to gradient times input; costs about one forward and one backward.

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the z-rule on pools and sums.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = [*base_layer_map(stabilizer), (LINEAR_TYPES, Epsilon(epsilon))]
        super().__init__(layer_map, canonizers=canonizers, op_map=default_op_map(stabilizer))


def _conv_dense(conv_rule: Rule, epsilon: float, stabilizer: float) -> list:
    return [*base_layer_map(stabilizer), (CONV_TYPES, conv_rule), (nn.Linear, Epsilon(epsilon))]


@COMPOSITES.register("epsilon_plus")
class EpsilonPlus(LayerMap):
    """z+ on convolutions, epsilon on dense layers (Kohlbrenner et al. 2020; Zennit's preset).

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(ZPlus(stabilizer), epsilon, stabilizer)
        super().__init__(layer_map, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_alpha2_beta1")
class EpsilonAlpha2Beta1(LayerMap):
    """alpha2-beta1 on convolutions, epsilon on dense layers (Zennit ``EpsilonAlpha2Beta1``).

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(AlphaBeta(2.0, 1.0, stabilizer), epsilon, stabilizer)
        super().__init__(layer_map, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_plus_flat")
class EpsilonPlusFlat(SpecialFirstLayer):
    """:class:`EpsilonPlus` with flat on the first linear or conv layer (Zennit's preset).

    Not for input pruning: flat makes input relevance independent of the pixels.

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(ZPlus(stabilizer), epsilon, stabilizer)
        first = [(LINEAR_TYPES, Flat(stabilizer))]
        super().__init__(layer_map, first, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_alpha2_beta1_flat")
class EpsilonAlpha2Beta1Flat(SpecialFirstLayer):
    """:class:`EpsilonAlpha2Beta1` with flat on the first linear or conv layer (Zennit's preset).

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(AlphaBeta(2.0, 1.0, stabilizer), epsilon, stabilizer)
        first = [(LINEAR_TYPES, Flat(stabilizer))]
        super().__init__(layer_map, first, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_gamma_box")
class EpsilonGammaBox(SpecialFirstLayer):
    """z^B on the first convolution, gamma on the others, epsilon on dense layers (Zennit's preset).

    As in Zennit, only a convolution gets the box rule: an MLP is explained with epsilon on its
    first layer too.

    Args:
        low: lowest input value in the model's (normalised) input space; float or tensor
            broadcastable to one sample. Default: MNIST pixel 0 after normalisation.
        high: highest input value, same form. Default: MNIST pixel 1 after normalisation.
        epsilon: stabiliser of the epsilon rule.
        gamma: gamma of the gamma rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        **STABILIZER_CHECKS,
        "gamma": finite_number(0),
        "low": finite_number(nullable=True),
        "high": finite_number(nullable=True),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """``low`` below ``high`` when both are given."""
        low, high = values.get("low"), values.get("high")
        if low is not None and high is not None and not low < high:
            raise ConfigError(
                f"{prefix}low must be below {prefix}high, got low={low!r}, high={high!r}"
            )

    def __init__(
        self,
        low: float | Tensor = MNIST_LOW,
        high: float | Tensor = MNIST_HIGH,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(Gamma(gamma, stabilizer), epsilon, stabilizer)
        first = [(CONV_TYPES, ZBox(low, high, stabilizer))]
        super().__init__(layer_map, first, canonizers=canonizers, op_map=default_op_map(stabilizer))
