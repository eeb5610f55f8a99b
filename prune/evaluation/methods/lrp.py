"""LRP attribution: any composite of ``prune.lrp``, absLRP included."""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from prune import lrp
from prune.evaluation.methods.base import METHODS, AttributionMethod


@METHODS.register("lrp")
class LRP(AttributionMethod):
    """Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019).

    A thin adapter over ``prune.lrp.attribute``: the composite decides the rule per layer
    (for example ``epsilon_plus``: epsilon for dense layers, z-plus for convolutions;
    ``abslrp``: relative absolute magnitude propagation, Vukadin et al. 2024). Relevance
    is approximately conserved: its sum is about the target logit, minus what biases
    and epsilon absorb. Every composite of ``prune.lrp.COMPOSITES`` is also registered as a
    method of its own, ``lrp_<composite>`` (absLRP as ``abslrp``).

    Args:
        composite: a name in ``prune.lrp.COMPOSITES``, or a composite object.
        **attribute_kwargs: passed on to ``prune.lrp.attribute``.

    Raises:
        KeyError: for an unknown composite name; the message lists the known ones.
    """

    name = "lrp"

    def __init__(self, composite: Any = "epsilon_plus", **attribute_kwargs: Any) -> None:
        if isinstance(composite, str) and composite not in lrp.COMPOSITES:
            raise KeyError(
                f"unknown LRP composite {composite!r}; choose from {sorted(lrp.COMPOSITES)}"
            )
        self.composite = composite
        self.attribute_kwargs = attribute_kwargs
        self.name = preset_name(composite) if isinstance(composite, str) else f"lrp_{composite}"

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return ``prune.lrp.attribute(...).input``."""
        result = lrp.attribute(model, x, target, composite=self.composite, **self.attribute_kwargs)
        return result.input


def preset_name(composite: str) -> str:
    """The method name of a named composite: ``lrp_<composite>``, absLRP as ``abslrp``."""
    return "abslrp" if composite == "abslrp" else f"lrp_{composite}"


for _composite in lrp.COMPOSITES:
    METHODS.register(preset_name(_composite))(functools.partial(LRP, composite=_composite))


@METHODS.register("abslrp_target")
def abslrp_target(**kwargs: Any) -> LRP:
    """absLRP's map of the target class alone (not the contrastive difference)."""
    return LRP(composite=lrp.COMPOSITES["abslrp"](contrastive=False), **kwargs)
