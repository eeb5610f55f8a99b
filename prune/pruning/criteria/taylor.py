"""Taylor criterion: first-order estimate of the loss change when a unit is removed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from prune.lrp.stats import RelevanceStats
from prune.pruning.criteria._backprop import accumulate_units, per_unit
from prune.pruning.criteria.base import Batches, Criterion, layer_norm, normalize_layer, producers
from prune.pruning.groups import ChannelGroup


class TaylorCriterion(Criterion):
    """|activation x gradient| per unit (Molchanov et al. 2017).

    Per sample, the product of a unit's output and the loss gradient there, averaged over
    positions, in absolute value; then averaged over samples. Needs labelled batches
    (forward and backward passes); parameter ``.grad`` are not touched.

    Args:
        normalize: divide each layer's scores by their L1 norm (Molchanov et al. use the L2
            norm; L1 keeps all criteria on one footing here).
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
        """``{producer: (C,)}`` mean |a * dL/da| over samples."""
        batches = self._need_batches(batches)
        names = producers(groups)
        raw = accumulate_units(model, names, batches, lambda a, g: per_unit(a * g).abs())
        return {n: normalize_layer(s, self.normalize) for n, s in raw.items()}
