"""Registry of attribution methods by name, so configs can select them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from prune.attribution.base import AttributionMethod
from prune.attribution.gradient import Gradient, GradientXInput
from prune.attribution.integrated_gradients import IntegratedGradients
from prune.attribution.lrp import LRP, LRP_PRESETS
from prune.attribution.random_baseline import RandomAttribution
from prune.attribution.smoothgrad import SmoothGrad


def _abslrp_target(**kwargs: Any) -> AttributionMethod:
    """absLRP's map of the target class alone (not the contrastive difference)."""
    from prune.lrp.composites import AbsLRP

    return LRP(composite=AbsLRP(contrastive=False), **kwargs)


#: name -> factory taking keyword arguments; add a method by adding one entry
METHODS: dict[str, Callable[..., AttributionMethod]] = {
    "gradient": Gradient,
    "gradient_x_input": GradientXInput,
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "random": RandomAttribution,
    "lrp": LRP,
    **{
        ("abslrp" if p == "abslrp" else f"lrp_{p}"): functools.partial(LRP, composite=p)
        for p in LRP_PRESETS
    },
    "abslrp_target": _abslrp_target,
}


def get_method(name: str, **kwargs: Any) -> AttributionMethod:
    """Build the attribution method registered as ``name``.

    Args:
        name: a key of :data:`METHODS`, e.g. ``"gradient_x_input"`` or ``"lrp_epsilon_plus"``.
        **kwargs: constructor arguments of that method.

    Raises:
        KeyError: for an unknown name; the message lists the known ones.
    """
    if name not in METHODS:
        raise KeyError(f"unknown attribution method {name!r}; choose from {sorted(METHODS)}")
    method = METHODS[name](**kwargs)
    if name != "lrp":  # the generic entry keeps the name derived from its composite
        method.name = name
    return method


def get_methods(
    names: Iterable[str] | dict[str, dict[str, Any] | None],
) -> dict[str, AttributionMethod]:
    """Build several methods: a list of names, or a mapping name -> kwargs (or None)."""
    if isinstance(names, dict):
        return {n: get_method(n, **(kw or {})) for n, kw in names.items()}
    return {n: get_method(n) for n in names}
