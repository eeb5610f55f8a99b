"""Integrated gradients: path integral of the gradient from a baseline to the input."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prune.evaluation.methods.base import METHODS, AttributionMethod, target_logit_gradient


@METHODS.register("integrated_gradients")
class IntegratedGradients(AttributionMethod):
    """Integrated gradients (Sundararajan et al. 2017, eq. 3), midpoint Riemann sum.

    ``R = (x - x0) * mean_k grad f((x0 + a_k (x - x0)))`` with ``a_k = (k + 1/2) / steps``.
    Completeness (``sum R = f(x) - f(x0)``) holds up to the quadrature error.

    Args:
        steps: number of points on the path (16 is enough for small ReLU classifiers; raise
            it when completeness errors matter).
        baseline: constant reference value ``x0`` in the model's input space; pass the
            normalised value of a black pixel to integrate from a black image.
        internal_batch: the most path points evaluated in one forward pass, times the batch.
    """

    name = "integrated_gradients"

    def __init__(self, steps: int = 16, baseline: float = 0.0, internal_batch: int = 16) -> None:
        if steps < 1:
            raise ValueError(f"integrated_gradients steps must be >= 1, got {steps}")
        self.steps, self.baseline, self.internal_batch = int(steps), float(baseline), internal_batch

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return the integrated gradients of the target logit."""
        delta = x - self.baseline
        alphas = (torch.arange(self.steps, device=x.device, dtype=x.dtype) + 0.5) / self.steps
        total = torch.zeros_like(x)
        for chunk in alphas.split(max(1, self.internal_batch)):
            # (S, B, *sample) -> (S*B, *sample): all path points of a chunk in one pass
            path = self.baseline + chunk.view(-1, *[1] * x.dim()) * delta
            grad, _ = target_logit_gradient(model, path.flatten(0, 1), target.repeat(chunk.numel()))
            total += grad.view(chunk.numel(), *x.shape).sum(0)
        return delta * total / self.steps
