"""SmoothGrad: the gradient averaged over noisy copies of the input."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.evaluation.methods.base import METHODS, AttributionMethod, target_logit_gradient


@METHODS.register("smoothgrad")
class SmoothGrad(AttributionMethod):
    """SmoothGrad (Smilkov et al. 2017): mean gradient over Gaussian-perturbed inputs.

    The noise standard deviation is ``noise_level * (max(x) - min(x))`` per sample, the
    paper's relative noise level (10-20% works well). Noise comes from the method's own
    generator seeded at construction, so a fresh method with the same seed repeats its
    results exactly.

    Args:
        samples: number of noisy copies per input.
        noise_level: noise standard deviation relative to each sample's value range.
        times_input: multiply the mean gradient by the input (SmoothGrad x input).
        seed: seed of the noise generator.
        internal_batch: the most noisy copies evaluated in one forward pass, times the batch.
    """

    name = "smoothgrad"

    def __init__(
        self,
        samples: int = 16,
        noise_level: float = 0.15,
        times_input: bool = False,
        seed: int = 0,
        internal_batch: int = 16,
    ) -> None:
        if samples < 1:
            raise ValueError(f"smoothgrad samples must be >= 1, got {samples}")
        if noise_level < 0:
            raise ValueError(f"smoothgrad noise_level must be >= 0, got {noise_level}")
        self.samples, self.noise_level, self.times_input = int(samples), noise_level, times_input
        self.seed, self.internal_batch = seed, internal_batch
        self._generator = torch.Generator().manual_seed(seed)

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return the mean gradient over noisy inputs (times the input if asked)."""
        flat = x.flatten(1)
        sigma = self.noise_level * (flat.amax(1) - flat.amin(1))  # (B,)
        sigma = sigma.view(1, -1, *[1] * (x.dim() - 1))
        total = torch.zeros_like(x)
        left = self.samples
        while left > 0:
            n = min(left, max(1, self.internal_batch))
            # draw on the CPU generator so results do not depend on the device
            noise = torch.randn((n, *x.shape), generator=self._generator, dtype=x.dtype)
            noisy = x + sigma * noise.to(x.device)  # (n, B, *sample)
            grad, _ = target_logit_gradient(model, noisy.flatten(0, 1), target.repeat(n))
            total += grad.view(n, *x.shape).sum(0)
            left -= n
        mean_grad = total / self.samples
        return mean_grad * x if self.times_input else mean_grad
