"""Gradient x input criterion: first-order contribution of each input element."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, boolean
from prune.pruning.criteria._backprop import evaluated
from prune.pruning.criteria.base import Batches, Criterion


class GradientXInputCriterion(Criterion):
    """Sum over samples of |x * d logit_y / dx| (Shrikumar et al. 2016; Ancona et al. 2018).

    Explains the true class's logit, as the relevance statistics do. For ReLU networks
    it equals LRP-0 (Ancona et al. 2018), so it is the natural
    ablation of the LRP rules. The model runs in eval mode; its mode is restored.

    Args:
        absolute: sum |x * grad| (True) or the signed product (False).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"batches"})
    targets: ClassVar[frozenset[str]] = frozenset({"inputs"})
    config_checks: ClassVar[dict[str, Check]] = {"absolute": boolean()}

    def __init__(self, absolute: bool = True) -> None:
        self.absolute = bool(absolute)

    def input_scores(self, model: nn.Module, example_input: Tensor, batches: Batches) -> Tensor:
        """Summed attribution per element, shaped like one sample."""
        total, count = None, 0
        with evaluated(model):
            for x, y in batches:
                x = x.detach().requires_grad_(True)
                logit = model(x).gather(1, y.long().view(-1, 1)).sum()
                (grad,) = torch.autograd.grad(logit, x)
                a = (x.detach() * grad).to(torch.float64)
                a = a.abs() if self.absolute else a
                total = a.sum(0) if total is None else total + a.sum(0)
                count += x.shape[0]
        if count == 0:
            raise ValueError("GradientXInputCriterion got no samples in batches")
        return total
