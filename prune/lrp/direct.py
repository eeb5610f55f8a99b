"""A rule's common case called directly, for a traced program (:mod:`prune.lrp.program`).

Where no functional mode is active, the engine's wrapper of an epsilon or LRP-0 layer or of a
ReLU that folds in its input's owed rescale (:mod:`prune.lrp.flow`) calls the rule's arithmetic
without its general dispatch (type checks, a layer object per call, the mode's guards): the same
result and the same bookkeeping in fewer calls. On a small MLP the dispatch costs as much as the
arithmetic it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from prune.lrp.core import LINEAR_TYPES, LinearOp, LinearRule, Rule
from prune.lrp.flow import _fused_relu
from prune.lrp.rules import Pass
from prune.lrp.state import RunState


def direct_step(module: nn.Module, rule: Rule, fuses: bool) -> Callable[..., Any] | None:
    """``(x, run) -> output``, or None from it where the input needs the general path (it owes
    a rescale, or is a constant); None where the rule has no direct form.

    Args:
        module: the layer.
        rule: its rule.
        fuses: whether the layer is a ReLU with a pass-through rule (fused with what it reads).
    """
    if fuses and type(rule) is Pass:  # a ReLU that folds in the rescale its input owes (flow.py)

        def relu(x: Tensor, run: RunState) -> Tensor:
            if x in run.roots:
                run.root_other_used = True
            y = _fused_relu(x, run)  # (run.inside only matters to the functional mode)
            return x.relu() if y is None else y

        return relu
    plain_rule = isinstance(rule, LinearRule) and type(rule).apply is LinearRule.apply
    if not (plain_rule and rule.always_fast and isinstance(module, LINEAR_TYPES)):
        return None
    try:
        op = LinearOp(module)
    except NotImplementedError:  # the general path raises it when the layer runs
        return None
    fast = rule.fast

    def linear(x: Tensor, run: RunState) -> Tensor | None:
        if id(x) in run.pending or not x.requires_grad:
            return None  # owes a rescale, or is a constant: the general path
        weight, bias = run.weight_bias(module)
        out = fast(op, x, weight, bias, run)
        if x in run.roots:
            run.root_other_used = True
        return out

    return linear
