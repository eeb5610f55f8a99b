"""Composites: which rule goes on which layer and functional op, with named presets.

- :mod:`.base`: the :class:`Composite` protocol, rules by layer type (:class:`LayerMap`,
  :class:`SpecialFirstLayer`) or by name (:class:`NameMap`), the registry.
- :mod:`.presets`: Zennit's presets for MLPs and CNNs (``epsilon``, ``epsilon_plus``, ...).
- :mod:`.transformer`: ``attnlrp`` and ``cp_lrp``.
- :mod:`.abslrp`: ``abslrp``, for CNNs and transformers.
"""

from prune.lrp.composites.abslrp import AbsLRP
from prune.lrp.composites.base import (
    COMPOSITES,
    OPS,
    STABILIZER_CHECKS,
    Composite,
    LayerMap,
    LayerMapping,
    NameMap,
    SpecialFirstLayer,
    base_layer_map,
    default_op_map,
    get_composite,
)
from prune.lrp.composites.presets import (
    MNIST_HIGH,
    MNIST_LOW,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonOnly,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from prune.lrp.composites.transformer import (
    CPLRP,
    TRANSFORMER_CHECKS,
    AttnLRP,
    transformer_canonizers,
)

__all__ = [
    "COMPOSITES",
    "CPLRP",
    "MNIST_HIGH",
    "MNIST_LOW",
    "OPS",
    "STABILIZER_CHECKS",
    "TRANSFORMER_CHECKS",
    "AbsLRP",
    "AttnLRP",
    "Composite",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonGammaBox",
    "EpsilonOnly",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "LayerMap",
    "LayerMapping",
    "NameMap",
    "SpecialFirstLayer",
    "base_layer_map",
    "default_op_map",
    "get_composite",
    "transformer_canonizers",
]
