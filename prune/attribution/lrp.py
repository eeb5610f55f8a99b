"""LRP attribution: any composite preset of ``prune.lrp``, absLRP included."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from prune.attribution.base import AttributionMethod

#: presets of ``prune.lrp.COMPOSITES`` exposed as named methods (``lrp_<preset>``; absLRP
#: as ``abslrp``)
LRP_PRESETS: tuple[str, ...] = (
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "abslrp",
)


class LRP(AttributionMethod):
    """Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019).

    A thin adapter over ``prune.lrp.attribute``: the composite decides the rule per layer
    (for example ``epsilon_plus``: epsilon for dense layers, z-plus for convolutions;
    ``abslrp``: relative absolute magnitude propagation, Vukadin et al. 2024). Relevance
    is approximately conserved: its sum is about the target logit, minus what biases
    and epsilon absorb.

    Args:
        composite: a name in ``prune.lrp.COMPOSITES`` (or a composite object, passed on).
        **attribute_kwargs: passed to ``prune.lrp.attribute`` (for example the box bounds
            ``low``/``high`` of z-B, if the engine takes them there).
    """

    name = "lrp"

    def __init__(self, composite: Any = "epsilon_plus", **attribute_kwargs: Any) -> None:
        self.composite = composite
        self.attribute_kwargs = attribute_kwargs
        self.name = "abslrp" if composite == "abslrp" else f"lrp_{composite}"

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return ``prune.lrp.attribute(...).input``."""
        # imported here so that the other methods work while the engine is absent
        from prune import lrp

        known = getattr(lrp, "COMPOSITES", None)
        if isinstance(self.composite, str) and known is not None and self.composite not in known:
            raise KeyError(f"unknown LRP composite {self.composite!r}; choose from {sorted(known)}")
        result = lrp.attribute(model, x, target, composite=self.composite, **self.attribute_kwargs)
        return result.input
