"""Gradient-based attributions: saliency and gradient x input."""

from __future__ import annotations

from torch import Tensor, nn

from prune.evaluation.methods.base import METHODS, AttributionMethod, target_logit_gradient


@METHODS.register("gradient")
class Gradient(AttributionMethod):
    """Gradient of the target logit (Simonyan et al. 2014; Baehrens et al. 2010).

    Args:
        absolute: return ``|gradient|`` (the classic saliency map) instead of the signed
            gradient.
    """

    name = "gradient"

    def __init__(self, absolute: bool = False) -> None:
        self.absolute = absolute

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return the (absolute) input gradient of the target logit."""
        grad, _ = target_logit_gradient(model, x, target)
        return grad.abs() if self.absolute else grad


@METHODS.register("gradient_x_input")
class GradientXInput(AttributionMethod):
    """Gradient times input (Shrikumar et al. 2016).

    Equals LRP-0 for ReLU networks without biases (Montavon et al. 2019, sec. 10.2.1).
    The reference point is zero in the *model's* input space, i.e. after normalisation.
    """

    name = "gradient_x_input"

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        """Return ``x * d logit / dx``."""
        grad, _ = target_logit_gradient(model, x, target)
        return grad * x
