"""What a tuning search chooses: a rule (and its value) per layer group, and how the criterion
sums relevance (|R| or signed R)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from prune.checks import Check, is_number
from prune.lrp.rules import AlphaBeta, Epsilon, Gamma, Rule, ZPlus
from prune.pruning.criteria.lrp import LRPCriterion

#: The rules a group can take: name -> (the value it is searched with or None, its constructor
#: from that value and the stabiliser). All are rules for linear and convolutional layers.
RULES: dict[str, tuple[str | None, Callable[[float | None, float], Rule]]] = {
    "epsilon": ("epsilon", lambda value, stabilizer: Epsilon(value)),
    "gamma": ("gamma", lambda value, stabilizer: Gamma(value, stabilizer)),
    "zplus": (None, lambda value, stabilizer: ZPlus(stabilizer)),
    "alpha2beta1": (None, lambda value, stabilizer: AlphaBeta(2.0, 1.0, stabilizer)),
}

AGGREGATE = "aggregate"
"""The parameter that picks the criterion's ``aggregate``."""


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_groups(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(
            isinstance(group, str)
            and bool(group)
            and _is_list(patterns)
            and bool(patterns)
            and all(isinstance(p, str) and p for p in patterns)
            for group, patterns in value.items()
        )
    )


def _is_range(low_bound: float, above: bool) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if not (_is_list(value) and len(value) == 2):
            return False
        low, high = value
        if not (is_number(low) and is_number(high) and math.isfinite(low) and math.isfinite(high)):
            return False
        return (low > low_bound if above else low >= low_bound) and low < high

    return test


def _is_subset(options: Sequence[str]) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        return (
            _is_list(value)
            and bool(value)
            and all(v in options for v in value)
            and len(set(value)) == len(value)
        )

    return test


class SearchSpace:
    """The choices of a search, one set per layer group.

    Each group takes one of ``rules`` on all its layers: ``epsilon`` with a value searched on a
    log scale in ``epsilon``, ``gamma`` with a value in ``gamma``, ``zplus`` or ``alpha2beta1``
    (alpha 2, beta 1). The criterion sums relevance per unit by one of ``aggregates`` (see
    :class:`~prune.pruning.criteria.lrp.LRPCriterion`: ``abs`` and ``unit_abs`` take |R|,
    ``signed`` R itself).

    Parameters are named ``<group>.rule``, ``<group>.epsilon``, ``<group>.gamma`` (only where
    the group's rule takes it) and ``aggregate``.

    Args:
        groups: ``{group: [name patterns]}``; a layer belongs to the group of a pattern that
            names it or a module it lies in (:func:`prune.tuning.layers.matches`).
        rules: the rules each group chooses from, names of :data:`RULES`.
        epsilon: ``[low, high]`` of epsilon, ``0 < low < high`` (searched on a log scale).
        gamma: ``[low, high]`` of gamma, ``0 <= low < high``.
        aggregates: the criterion's ``aggregate`` values to choose from.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "groups": Check("a mapping of group names to non-empty lists of layer names", _is_groups),
        "rules": Check(f"a non-empty list of {list(RULES)}, each once", _is_subset(list(RULES))),
        "epsilon": Check("a list [low, high] with 0 < low < high", _is_range(0.0, above=True)),
        "gamma": Check("a list [low, high] with 0 <= low < high", _is_range(0.0, above=False)),
        "aggregates": Check(
            f"a non-empty list of {list(LRPCriterion.AGGREGATES)}, each once",
            _is_subset(LRPCriterion.AGGREGATES),
        ),
    }

    def __init__(
        self,
        groups: Mapping[str, Sequence[str]],
        rules: Sequence[str] = tuple(RULES),
        epsilon: Sequence[float] = (1e-8, 1.0),
        gamma: Sequence[float] = (0.0, 1.0),
        aggregates: Sequence[str] = LRPCriterion.AGGREGATES,
    ) -> None:
        values = {
            "groups": groups,
            "rules": list(rules),
            "epsilon": list(epsilon),
            "gamma": list(gamma),
            "aggregates": list(aggregates),
        }
        for name, check in self.config_checks.items():
            check(f"tune.space.{name}", values[name])
        self.groups = {g: list(patterns) for g, patterns in groups.items()}
        self.rules, self.aggregates = list(rules), list(aggregates)
        self.ranges = {"epsilon": tuple(map(float, epsilon)), "gamma": tuple(map(float, gamma))}

    def suggest(self, trial: Any, groups: Sequence[str]) -> dict[str, Any]:
        """One choice for each of ``groups`` and the aggregate, drawn from an Optuna ``trial``."""
        params: dict[str, Any] = {}
        for group in groups:
            rule = trial.suggest_categorical(f"{group}.rule", self.rules)
            params[f"{group}.rule"] = rule
            value = RULES[rule][0]
            if value is not None:
                low, high = self.ranges[value]
                key = f"{group}.{value}"
                params[key] = trial.suggest_float(key, low, high, log=value == "epsilon")
        params[AGGREGATE] = trial.suggest_categorical(AGGREGATE, self.aggregates)
        return params

    def rules_of(self, params: Mapping[str, Any], stabilizer: float) -> dict[str, Rule]:
        """``{group: rule}`` for the groups ``params`` chooses a rule for.

        Args:
            params: parameters as :meth:`suggest` returns them.
            stabilizer: the stabiliser of gamma, z+ and alpha-beta (the base composite's epsilon,
                as AttnLRP's gamma takes it).
        """
        rules = {}
        for key, rule in params.items():
            if not key.endswith(".rule"):
                continue
            group = key.removesuffix(".rule")
            value, build = RULES[rule]
            rules[group] = build(None if value is None else params[f"{group}.{value}"], stabilizer)
        return rules

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether a trial of this space can choose ``params`` (rules, ranges, aggregate)."""
        for key, rule in params.items():
            if not key.endswith(".rule"):
                continue
            if rule not in self.rules:
                return False
            value = RULES[rule][0]
            if value is not None:
                low, high = self.ranges[value]
                if not low <= params[f"{key.removesuffix('.rule')}.{value}"] <= high:
                    return False
        return params.get(AGGREGATE) in self.aggregates


def base_params(
    groups: Sequence[str], epsilon: float, gamma: float | None, aggregate: str
) -> dict[str, Any]:
    """The parameters of a base composite whose linear layers all take epsilon, or gamma when
    ``gamma`` is set (AttnLRP's and CP-LRP's ``epsilon`` and ``gamma``), and of the criterion's
    own ``aggregate``: what the composite of a run without tuning chooses."""
    rule, value = ("epsilon", epsilon) if gamma is None else ("gamma", gamma)
    params: dict[str, Any] = {}
    for group in groups:
        params[f"{group}.rule"], params[f"{group}.{rule}"] = rule, float(value)
    params[AGGREGATE] = aggregate
    return params


def describe(params: Mapping[str, Any], group: str) -> str:
    """A group's choice in words: ``gamma 0.31``, ``epsilon 1e-05``, ``zplus``."""
    rule = params.get(f"{group}.rule")
    if rule is None:
        return "-"
    value = RULES[rule][0]
    return rule if value is None else f"{rule} {params[f'{group}.{value}']:.3g}"
