"""Random criterion: the baseline every criterion must beat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, integer
from prune.pruning.criteria.base import Criterion, producers
from prune.pruning.groups import ChannelGroup


class RandomCriterion(Criterion):
    """Uniform random scores from a seeded generator (units, input elements, heads, neurons).

    Show it beside every criterion from the same run: on MNIST input pruning, random pixels
    beat an LRP ranking under a flat first-layer rule, whose input relevance ignores the pixels.

    Args:
        seed: seed of the generator; the same seed gives the same scores on every call.
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    targets: ClassVar[frozenset[str]] = frozenset({"units", "inputs", "heads", "neurons"})
    config_checks: ClassVar[dict[str, Check]] = {"seed": integer()}

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def scores(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, Tensor]:
        """``{producer: (C,)}`` uniform in [0, 1)."""
        gen = self._generator()
        width = {p: g.width for g in groups for p in g.producers}
        return {
            n: torch.rand(width[n], generator=gen, dtype=torch.float64) for n in producers(groups)
        }

    def head_scores(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, Tensor]:
        """``{attention: (heads,)}`` uniform in [0, 1)."""
        return self.scores(model, groups)

    def neuron_scores(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, Tensor]:
        """``{MLP: (hidden,)}`` uniform in [0, 1)."""
        return self.scores(model, groups)

    def input_scores(self, model: nn.Module, example_input: Tensor) -> Tensor:
        """Uniform in [0, 1), shaped like one sample."""
        return torch.rand(example_input.shape[1:], generator=self._generator(), dtype=torch.float64)
