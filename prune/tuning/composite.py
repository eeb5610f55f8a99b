"""A composite with one rule per layer group, over a base composite for everything else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from prune.lrp.composites import Composite, NameMap
from prune.lrp.rules import Rule


class GroupRules(NameMap):
    """The rule of each layer group on the group's layers; every other layer and every
    functional op (attention products, softmax, LayerNorm, residual sums) as in ``base``, with
    its canonizers, its transparent layers and its output relevance.

    Example: AttnLRP everywhere, but gamma on the MLPs and z+ on the head::

        GroupRules(AttnLRP(), {"mlp": ["blocks.0.mlp.fc1", ...], "head": ["head"]},
                   {"mlp": Gamma(0.3), "head": ZPlus()})

    Args:
        base: the composite asked for every layer outside the groups.
        layers: ``{group: [qualified module names]}``
            (:func:`prune.tuning.layers.layer_groups`).
        rules: ``{group: rule}``; a group without a rule keeps the base's rules.

    Raises:
        KeyError: a rule for a group that ``layers`` does not have.
    """

    def __init__(
        self,
        base: Composite,
        layers: Mapping[str, Sequence[str]],
        rules: Mapping[str, Rule],
    ) -> None:
        unknown = sorted(set(rules) - set(layers))
        if unknown:
            raise KeyError(f"rules for unknown groups {unknown}; the groups are {sorted(layers)}")
        super().__init__([(layers[group], rule) for group, rule in rules.items()], fallback=base)
        self.base, self.rules = base, dict(rules)
        self.num_maps = base.num_maps

    def is_transparent(self, module: nn.Module) -> bool:
        """As the base composite decides."""
        return self.base.is_transparent(module)

    def seeds(self, logits: Tensor, relevance: Tensor) -> list[tuple[float, Tensor]]:
        """The base composite's output relevance."""
        return self.base.seeds(logits, relevance)

    def __repr__(self) -> str:
        rules = ", ".join(f"{group}={rule!r}" for group, rule in self.rules.items())
        return f"GroupRules({self.base!r}, {rules})"


def group_rules_config(
    base: Mapping[str, Any], layers: Mapping[str, Sequence[str]], rules: Mapping[str, Rule]
) -> dict[str, Any]:
    """A Hydra config that builds ``GroupRules(base, layers, rules)``: saved as a file under
    ``conf/lrp/``, ``python train.py ... lrp=<file>`` explains with it.

    Args:
        base: the base composite's config (with its ``_target_``).
        layers: ``{group: [qualified module names]}``.
        rules: ``{group: rule}``; each rule is written as its class and constructor arguments.
    """
    return {
        "_target_": f"{GroupRules.__module__}.{GroupRules.__qualname__}",
        "_convert_": "all",
        "base": dict(base),
        "layers": {group: list(names) for group, names in layers.items()},
        "rules": {group: _rule_config(rule) for group, rule in rules.items()},
    }


def _rule_config(rule: Rule) -> dict[str, Any]:
    """A rule as its class and constructor arguments (a rule keeps no other attributes)."""
    args = {k: v for k, v in vars(rule).items() if not k.startswith("_")}
    return {"_target_": f"{type(rule).__module__}.{type(rule).__qualname__}", **args}
