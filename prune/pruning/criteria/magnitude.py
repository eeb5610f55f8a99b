"""Magnitude criterion: the norm of each unit's incoming weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from prune.checks import Check, choice
from prune.pruning.criteria.base import (
    NORMALIZE_CHECK,
    Criterion,
    layer_norm,
    normalize_layer,
    producers,
    unit_weight,
)
from prune.pruning.groups import ChannelGroup


class MagnitudeCriterion(Criterion):
    """L_p norm of each output unit's weights (Li et al. 2017, "Pruning filters", L1).

    Data free and cheap; the usual baseline for structured pruning. It ignores the bias and
    what follows the unit (a BatchNorm can rescale a small filter).

    Args:
        p: norm degree, 1 or 2.
        normalize: divide each layer's scores by their L1 norm, so a global ranking does not
            simply prune the layers with the smallest weights (fan-in differs per layer).
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    targets: ClassVar[frozenset[str]] = frozenset({"units"})
    config_checks: ClassVar[dict[str, Check]] = {"p": choice(1, 2), "normalize": NORMALIZE_CHECK}

    def __init__(self, p: int = 1, normalize: bool | str = True) -> None:
        if p not in (1, 2):
            raise ValueError(f"magnitude criterion p must be 1 or 2, got {p}")
        self.p, self.normalize = int(p), layer_norm(normalize)

    def scores(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, Tensor]:
        """``{producer: (C,)}`` weight norms."""
        out = {}
        for name in producers(groups):
            s = unit_weight(model.get_submodule(name)).double().norm(p=self.p, dim=1)
            out[name] = normalize_layer(s, self.normalize)
        return out
