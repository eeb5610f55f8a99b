"""Random attribution: the baseline every explanation must beat."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.evaluation.methods.base import METHODS, AttributionMethod


@METHODS.register("random")
class RandomAttribution(AttributionMethod):
    """Independent uniform noise in [0, 1) per input element; ignores the model.

    Used as the chance level in feature-removal and pixel-flipping experiments
    (Samek et al. 2017, "random" ordering; Hooker et al. 2019, ROAR). Values come from
    the method's own generator seeded at construction.

    Args:
        seed: seed of the generator.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return uniform noise shaped like ``x``."""
        noise = torch.rand(x.shape, generator=self._generator, dtype=x.dtype)
        return noise.to(x.device)
