"""Criterion: turns a model (and relevance stats or batches) into scores; higher means keep."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.lrp.stats import RelevanceStats
from prune.pruning.groups import ChannelGroup

Batches = Iterable[Sequence[Tensor]]
"""An iterable of ``(x, y)`` batches on the model's device."""


class Criterion:
    """Base of all pruning criteria.

    A criterion scores output units (``target="units"``: one score per output channel or
    neuron of each group's producers) and/or input elements (``target="inputs"``: one score per
    element of a sample). It declares what it needs in ``requires``: ``"relevance"``
    (a :class:`~prune.lrp.stats.RelevanceStats`), ``"batches"`` (labelled data to run forward
    and backward passes on), or nothing. Scores are float64; higher means keep.
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    targets: ClassVar[frozenset[str]] = frozenset({"units"})

    def scores(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        stats: RelevanceStats | None = None,
        batches: Batches | None = None,
    ) -> dict[str, Tensor]:
        """Scores ``{producer name: (width,)}`` for every producer of every group."""
        raise TypeError(
            f"{type(self).__name__} cannot score units; it scores {sorted(self.targets)}"
        )

    def input_scores(
        self,
        model: nn.Module,
        example_input: Tensor,
        stats: RelevanceStats | None = None,
        batches: Batches | None = None,
    ) -> Tensor:
        """Scores shaped like one dense input sample (``example_input.shape[1:]``)."""
        raise TypeError(
            f"{type(self).__name__} cannot score inputs; it scores {sorted(self.targets)}"
        )

    # -- helpers for subclasses ----------------------------------------------------------------
    def _need_stats(self, stats: RelevanceStats | None) -> RelevanceStats:
        if stats is None:
            raise ValueError(f"{type(self).__name__} requires relevance stats; got stats=None")
        return stats

    def _need_batches(self, batches: Batches | None) -> Batches:
        if batches is None:
            raise ValueError(f"{type(self).__name__} requires batches of (x, y); got batches=None")
        return batches

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def producers(groups: Sequence[ChannelGroup]) -> list[str]:
    """All producer names of ``groups``, in order."""
    return [p for g in groups for p in g.producers]


NORMS = ("l1", "l2", "none")


def layer_norm(value: bool | str | None) -> str:
    """Check a criterion's ``normalize`` argument: true/"l1", "l2", or false/"none"."""
    if value is True:
        return "l1"
    if value is False or value is None:
        return "none"
    if isinstance(value, str) and value.lower() in NORMS:
        return value.lower()
    raise ValueError(f"normalize={value!r} is not allowed; choose true (= 'l1'), 'l2' or false")


def normalize_layer(scores: Tensor, norm: str = "l1") -> Tensor:
    """Divide a layer's scores by their L1 (or L2) norm, so that layers of different size and
    scale rank together globally. L1 gives every layer the same total; L2 (Molchanov et al.
    2017) lets a layer's total grow with the square root of its width. ``"none"``: as is."""
    scores = scores.to(torch.float64)
    if norm == "none":
        return scores
    total = scores.abs().sum() if norm == "l1" else scores.pow(2).sum().sqrt()
    return scores / total.clamp_min(torch.finfo(torch.float64).tiny)


def unit_weight(module: nn.Module) -> Tensor:
    """Weights of a producer arranged ``(units, fan_in)``."""
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"expected a Conv2d or Linear producer, got {type(module).__name__}")
    return module.weight.detach().flatten(1)
