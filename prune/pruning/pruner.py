"""Pruner: criterion + how much + when -> a PruningPlan relative to the dense model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, boolean, choice, fraction, int_at_least, integer, is_int
from prune.errors import ConfigError
from prune.pruning.criteria.base import METHODS, Batches, Criterion
from prune.pruning.groups import ChannelGroup, build_graph, example_input_for, find_groups
from prune.pruning.heads_view import expose_heads
from prune.pruning.importance import group_scores
from prune.pruning.plan import PruningPlan
from prune.pruning.schedule import SCHEDULES, ratio_at
from prune.pruning.selection import keep_top, select_global, select_per_layer
from prune.pruning.surgery import applied_plan, check_input_pruning
from prune.pruning.transformer import KINDS, output_names, unit_groups

if TYPE_CHECKING:
    from prune.lrp import RelevanceStats

COMBINED: dict[str, tuple[str, ...]] = {"heads_and_neurons": tuple(KINDS)}
"""Targets that cut several unit kinds in one plan: every kind by the same schedule."""

TARGETS = ("units", "inputs", *KINDS, *COMBINED)


def kinds_of(target: str) -> tuple[str, ...]:
    """The transformer unit kinds ``target`` cuts: ``("heads",)``, ``("heads", "neurons")``,
    or ``()`` for units and inputs."""
    return COMBINED.get(target, (target,) if target in KINDS else ())


def scored_targets(criterion_targets: frozenset[str]) -> list[str]:
    """The pruner targets a criterion with ``criterion_targets`` can score."""
    return [t for t in TARGETS if set(kinds_of(t) or (t,)) <= criterion_targets]


class Pruner:
    """Scores a model with a criterion and selects what to keep, round by round.

    Plain arguments, so Hydra can build it from ``conf/pruner/*.yaml``. The final amount is
    ``ratio`` (fraction removed) or ``keep`` (number kept; it replaces ``ratio`` when set).
    With ``rounds > 1`` the schedule spreads it over rounds; :meth:`plan` for round k returns
    the cumulative plan, relative to the dense model.

    Args:
        criterion: scores units and/or inputs (its ``targets``).
        target: "units" (neurons and conv channels of every prunable group), "inputs"
            (elements of a sample: pixels), "heads" (the attention heads of transformer
            blocks), "neurons" (the hidden neurons of transformer blocks' MLPs) or
            "heads_and_neurons" (both, each attention module and MLP cut by the same fraction;
            needs ``global_ranking=False``); see :mod:`prune.pruning.transformer`.
        ratio: final fraction removed, in [0, 1): of all prunable units (heads, neurons)
            together, or of the input elements.
        keep: final number kept (inputs: elements; otherwise all prunable units, heads or
            neurons together); replaces ``ratio`` when not None.
        rounds: number of prune (and retrain) rounds, >= 1.
        schedule: "constant" (equal steps) or "geometric" (equal fractions of what is left).
        global_ranking: rank units of all groups together (needs comparable, per-layer
            normalised scores) or remove the same fraction of every group.
        min_width: units every group (heads every attention module, neurons every MLP) keeps
            at least, >= 1.
        seed: seed of the permutation that breaks exact ties between scores.

    Raises:
        ValueError, TypeError: naming the bad argument and the allowed values.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "target": choice(*TARGETS),
        "ratio": fraction(closed="left", note="fraction removed", nullable=True),
        "keep": Check(
            "an integer >= 1 (number kept) or null", lambda v: is_int(v) and v >= 1, nullable=True
        ),
        "rounds": int_at_least(1),
        "schedule": choice(*sorted(SCHEDULES)),
        "global_ranking": boolean(),
        "min_width": int_at_least(1),
        "seed": integer(),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """One of ``ratio`` and ``keep`` is set; a combined target ranks per module."""
        if values.get("ratio", 0.5) is None and values.get("keep") is None:
            raise ConfigError(f"{prefix}ratio and {prefix}keep are both null; set one of them")
        target = values.get("target", "units")
        if target in COMBINED and values.get("global_ranking", True):
            raise ConfigError(_global_combined(target, prefix))

    def __init__(
        self,
        criterion: Criterion,
        target: str = "units",
        ratio: float | None = 0.5,
        keep: int | None = None,
        rounds: int = 1,
        schedule: str = "constant",
        global_ranking: bool = True,
        min_width: int = 1,
        seed: int = 0,
    ) -> None:
        if not isinstance(criterion, Criterion):
            raise TypeError(f"pruner.criterion must be a Criterion, got {type(criterion).__name__}")
        if target not in TARGETS:
            raise ValueError(f"pruner.target must be one of {list(TARGETS)}, got {target!r}")
        if target not in scored_targets(criterion.targets):
            raise ValueError(
                f"pruner.criterion {type(criterion).__name__} cannot score target={target!r}; "
                f"it scores {scored_targets(criterion.targets)}"
            )
        if target in COMBINED and global_ranking:
            raise ValueError(_global_combined(target, "pruner."))
        if ratio is None and keep is None:
            raise ValueError("set pruner.ratio (fraction removed) or pruner.keep (number kept)")
        if ratio is not None and not 0.0 <= float(ratio) < 1.0:
            raise ValueError(f"pruner.ratio must be in [0, 1), got {ratio}")
        if keep is not None and (int(keep) != keep or keep < 1):
            raise ValueError(f"pruner.keep must be an integer >= 1, got {keep}")
        if int(rounds) != rounds or rounds < 1:
            raise ValueError(f"pruner.rounds must be an integer >= 1, got {rounds}")
        if schedule not in SCHEDULES:
            raise ValueError(
                f"pruner.schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}"
            )
        if int(min_width) != min_width or min_width < 1:
            raise ValueError(f"pruner.min_width must be an integer >= 1, got {min_width}")
        self.criterion, self.target, self.schedule = criterion, target, schedule
        self.ratio = None if keep is not None else float(ratio)
        self.keep = None if keep is None else int(keep)
        self.rounds, self.min_width, self.seed = int(rounds), int(min_width), int(seed)
        self.global_ranking = bool(global_ranking)

    @property
    def needs(self) -> frozenset[str]:
        """What :meth:`plan` needs besides the model: ``"stats"``, ``"batches"``, or nothing."""
        return self.criterion.needs

    def ratio_at(self, round_index: int, total: int | None = None) -> float:
        """Cumulative fraction of the dense units (or inputs) removed after ``round_index``.

        Args:
            round_index: 0 (dense) to ``rounds``.
            total: dense count of units or inputs; needed when the pruner is set by ``keep``.
        """
        if self.keep is None:
            final = self.ratio
        elif total is None:
            raise ValueError("pruner.keep is set, so ratio_at needs the dense total (total=...)")
        else:
            final = max(0.0, 1.0 - self.keep / total)
        return ratio_at(self.schedule, final, round_index, self.rounds)

    def total(self, model: nn.Module, example_input: Tensor | None = None) -> int:
        """What ``keep`` counts in the dense ``model``: its input elements, or its prunable units
        with each group of coupled layers (a residual sum's producers) counted once, or its
        heads, or its MLP neurons."""
        example_input = example_input_for(model, example_input)
        if self.target == "inputs":
            return math.prod(example_input.shape[1:])
        return sum(g.width for g in self.groups(model, example_input))

    def groups(self, model: nn.Module, example_input: Tensor | None = None) -> list[ChannelGroup]:
        """The groups of units ``model`` has for this target (not for inputs).

        Units: Torch-Pruning's coupled channel groups; heads and neurons: one group per
        attention module or MLP (:func:`prune.pruning.transformer.unit_groups`).
        """
        if kinds_of(self.target):
            return [g for of_kind in self._groups_by_kind(model).values() for g in of_kind]
        return find_groups(model, example_input_for(model, example_input))

    def _groups_by_kind(self, model: nn.Module) -> dict[str, list[ChannelGroup]]:
        """``{kind: its groups}`` for each transformer unit kind the target cuts. Heads: timm's
        attentions get a module on their heads' outputs first (:func:`expose_heads`; the
        model's outputs and ``state_dict`` stay as they are)."""
        kinds = kinds_of(self.target)
        if "heads" in kinds:
            expose_heads(model)
        return {kind: unit_groups(model, kind) for kind in kinds}

    def _no_groups(self, model: nn.Module) -> ValueError:
        if kinds := kinds_of(self.target):
            holders = " or ".join(KINDS[kind].holder for kind in kinds)
            return ValueError(
                f"{type(model).__name__} has no {self.target} to prune (target={self.target}): "
                f"no {holders} in the layout of prune.models.vit or timm "
                "(see prune.pruning.transformer)"
            )
        return ValueError(f"{type(model).__name__} has no prunable groups (target=units)")

    # -- checks before any training ------------------------------------------------------------
    def validate(self, model: nn.Module, example_input: Tensor | None = None) -> None:
        """Raise now, before training, if this pruner cannot work on ``model``."""
        example_input = example_input_for(model, example_input)
        if self.target == "inputs":
            n = math.prod(example_input.shape[1:])
            if self.keep is not None and self.keep > n:
                raise ValueError(
                    f"pruner.keep must be <= {n} (the input elements), got {self.keep}"
                )
            check_input_pruning(model, example_input)
            return
        groups = self.groups(model, example_input)
        if not groups:
            raise self._no_groups(model)
        total = sum(g.width for g in groups)
        what = "the prunable units" if self.target == "units" else f"the {self.target}"
        if self.keep is not None and self.keep > total:
            raise ValueError(f"pruner.keep must be <= {total} ({what}), got {self.keep}")
        floor = sum(min(self.min_width, g.width) for g in groups)
        if self.keep is not None and self.keep < floor:
            raise ValueError(
                f"pruner.keep={self.keep} is below what min_width={self.min_width} keeps over "
                f"{len(groups)} groups ({floor})"
            )

    def record_names(self, model: nn.Module, example_input: Tensor | None = None) -> list[str]:
        """Modules whose output relevance the LRP pass must record (for ``attribute(record=)``):
        the producers of units, each attention module's ``heads_out``, each MLP's ``fc1``."""
        if self.target == "inputs" or "stats" not in self.needs:
            return []
        if kinds_of(self.target):
            return [
                name
                for kind, of_kind in self._groups_by_kind(model).items()
                for name in output_names(model, of_kind, kind).values()
            ]
        return [p for g in self.groups(model, example_input) for p in g.producers]

    # -- one round -----------------------------------------------------------------------------
    def plan(
        self,
        model: nn.Module,
        example_input: Tensor | None = None,
        stats: RelevanceStats | None = None,
        batches: Batches | None = None,
        round_index: int = 1,
        current_plan: PruningPlan | None = None,
    ) -> PruningPlan:
        """Plan for round ``round_index`` (1..rounds), composed with ``current_plan``.

        Args:
            model: the current model (already cut to ``current_plan``, if any).
            example_input: one dense sample; built from ``model.in_shape`` when None.
            stats: relevance statistics recorded on ``model`` (criteria that need "stats").
            batches: ``(x, y)`` batches on the model's device (criteria that need "batches").
            round_index: which round this is; the schedule gives its cumulative ratio.
            current_plan: the plan ``model`` was cut to; defaults to the one recorded on it.

        Returns:
            The cumulative plan, indices relative to the dense model.
        """
        if not 1 <= round_index <= self.rounds:
            raise ValueError(f"round_index must be in [1, {self.rounds}], got {round_index}")
        needed = self.criterion.needed({"stats": stats, "batches": batches})
        example_input = example_input_for(model, example_input)
        current = current_plan if current_plan is not None else applied_plan(model)
        current = current if current is not None else PruningPlan()
        generator = torch.Generator().manual_seed(self.seed + round_index)
        plan_step = self._plan_inputs if self.target == "inputs" else self._plan_units
        return current.compose(
            plan_step(model, example_input, needed, round_index, current, generator)
        )

    def _plan_inputs(self, model, example_input, needed, round_index, current, generator):
        shape = tuple(example_input.shape[1:])
        n = math.prod(shape)
        scores = self.criterion.input_scores(model, example_input, **needed)
        if tuple(scores.shape) != shape:
            raise ValueError(f"input scores have shape {tuple(scores.shape)}, samples {shape}")
        kept_now = current.input_keep if current.input_keep is not None else list(range(n))
        target = max(1, round(n * (1.0 - self.ratio_at(round_index, n))))
        target = min(target, len(kept_now))
        scores = scores.flatten().to("cpu", torch.float64)[torch.as_tensor(kept_now)]
        return PruningPlan(input_keep=keep_top(scores, target, generator), input_shape=shape)

    def _plan_units(self, model, example_input, needed, round_index, current, generator):
        if kinds_of(self.target):  # heads, MLP neurons: one producer per group, no graph
            by_kind = self._groups_by_kind(model)
            groups = [g for of_kind in by_kind.values() for g in of_kind]
            if not groups:
                raise self._no_groups(model)
            scores = {}
            for kind, of_kind in by_kind.items():
                if of_kind:
                    score = getattr(self.criterion, METHODS[kind][0])
                    scores |= checked_scores(of_kind, score(model, of_kind, **needed))
        else:
            graph = build_graph(model, example_input)
            groups: list[ChannelGroup] = find_groups(model, example_input, graph)
            if not groups:
                raise self._no_groups(model)
            raw = self.criterion.scores(model, groups, **needed)
            scores = group_scores(model, graph, groups, raw)
        dense = {g.name: current.dense_widths.get(g.name, g.width) for g in groups}
        total = sum(dense.values())
        ratio = self.ratio_at(round_index, total)
        floor = {g.name: min(self.min_width, g.width) for g in groups}
        if self.global_ranking:
            kept = select_global(scores, round(total * (1.0 - ratio)), floor, generator)
        else:
            keep = {
                g.name: min(g.width, max(floor[g.name], round(dense[g.name] * (1.0 - ratio))))
                for g in groups
            }
            kept = select_per_layer(scores, keep, generator)
        widths = {p: current.dense_widths.get(p, g.width) for g in groups for p in g.producers}
        return PruningPlan(
            keep={p: kept[g.name] for g in groups for p in g.producers}, dense_widths=widths
        )

    def __repr__(self) -> str:
        amount = f"keep={self.keep}" if self.keep is not None else f"ratio={self.ratio}"
        return (
            f"Pruner({self.criterion!r}, target={self.target!r}, {amount}, rounds={self.rounds}, "
            f"schedule={self.schedule!r}, global_ranking={self.global_ranking}, "
            f"min_width={self.min_width})"
        )


def _global_combined(target: str, prefix: str) -> str:
    return (
        f"{prefix}global_ranking=true cannot rank {' against '.join(COMBINED[target])} "
        f"({prefix}target={target!r}: scores of different kinds of unit); set "
        f"{prefix}global_ranking=false to cut the same fraction of every module"
    )


def checked_scores(
    groups: Sequence[ChannelGroup], scores: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """``{group: (width,)}`` float64 scores of single-producer groups, checked.

    Raises:
        KeyError: naming a group the criterion did not score.
        ValueError: naming a group whose scores have the wrong length.
    """
    out = {}
    for g in groups:
        if g.name not in scores:
            raise KeyError(f"criterion returned no scores for {g.name!r}")
        s = scores[g.name].detach().to(torch.float64).flatten()
        if s.numel() != g.width:
            raise ValueError(
                f"scores for {g.name!r} have {s.numel()} entries, it has {g.width} units "
                "(were the stats recorded on another model?)"
            )
        out[g.name] = s
    return out


__all__: Sequence[str] = [
    "COMBINED",
    "TARGETS",
    "Pruner",
    "checked_scores",
    "kinds_of",
    "scored_targets",
]
