"""Taylor criterion: first-order estimate of the loss change when a unit is removed."""

from __future__ import annotations

from torch import Tensor

from prune.pruning.criteria._backprop import BackpropCriterion, per_unit


class TaylorCriterion(BackpropCriterion):
    """|activation x gradient| per unit (Molchanov et al. 2017).

    Per sample, the product of a unit's output and the loss gradient there, averaged over
    positions, in absolute value; then averaged over samples. Needs labelled batches
    (forward and backward passes); parameter ``.grad`` are not touched. For an attention head
    (its output's tokens and features as positions) this is the head importance of Michel et
    al. 2019, ``E |sum A_h dL/dA_h|``, up to a factor that is the same for every head.

    Args:
        normalize: divide each layer's scores by their L1 norm (Molchanov et al. use the L2
            norm; L1 keeps all criteria on one footing here).
    """

    @staticmethod
    def term(activation: Tensor, gradient: Tensor) -> Tensor:
        """|a * dL/da| with the product averaged over positions first."""
        return per_unit(activation * gradient).abs()
