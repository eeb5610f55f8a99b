"""Gradient criterion: how strongly the loss reacts to each unit's output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from prune.lrp.stats import RelevanceStats
from prune.pruning.criteria._backprop import accumulate_units, per_unit
from prune.pruning.criteria.base import Batches, Criterion, layer_norm, normalize_layer, producers
from prune.pruning.groups import ChannelGroup


class GradientCriterion(Criterion):
    """Mean |dL/da| of each unit's output over positions and samples.

    A baseline of Yeom et al. 2021: it measures sensitivity, not
    contribution, so a unit that is always zero can still score high.

    Args:
        normalize: divide each layer's scores by their L1 norm.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"batches"})
    targets: ClassVar[frozenset[str]] = frozenset({"units"})

    def __init__(self, normalize: bool | str = True) -> None:
        self.normalize = layer_norm(normalize)

    def scores(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        stats: RelevanceStats | None = None,
        batches: Batches | None = None,
    ) -> dict[str, Tensor]:
        """``{producer: (C,)}`` mean |dL/da| over samples."""
        batches = self._need_batches(batches)
        names = producers(groups)
        raw = accumulate_units(model, names, batches, lambda _a, g: per_unit(g.abs()))
        return {n: normalize_layer(s, self.normalize) for n, s in raw.items()}
