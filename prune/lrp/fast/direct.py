"""A rule's common case called directly, for a traced program (:mod:`prune.lrp.fast.program`).

Where no functional mode is active, the engine's wrapper of an epsilon or LRP-0 layer or of a
ReLU that folds in its input's owed rescale (:mod:`prune.lrp.fast.flow`) calls the rule's arithmetic
without its general dispatch (type checks, a layer object per call, the mode's guards): the same
result and the same bookkeeping in fewer calls. On a small MLP the dispatch costs as much as the
arithmetic it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from prune.lrp.fast.base import Kernel, LinearKernel, LinearOp
from prune.lrp.fast.flow import _fused_relu
from prune.lrp.fast.free import PassKernel
from prune.lrp.state import RunState
from prune.lrp.types import LINEAR_TYPES


def direct_step(module: nn.Module, kernel: Kernel, fuses: bool) -> Callable[..., Any] | None:
    """``(x, run) -> output``, or None from it where the input needs the general path (it owes
    a rescale, or is a constant); None where the kernel has no direct form.

    Args:
        module: the layer.
        kernel: its rule's kernel.
        fuses: whether the layer is a ReLU with a pass-through rule (fused with what it reads).
    """
    if (
        fuses and type(kernel) is PassKernel
    ):  # a ReLU that folds in the rescale its input owes (flow.py)

        def relu(x: Tensor, run: RunState) -> Tensor:
            if x in run.roots:
                run.root_other_used = True
            y = _fused_relu(x, run)  # (run.inside only matters to the functional mode)
            return x.relu() if y is None else y

        return relu
    plain = isinstance(kernel, LinearKernel) and type(kernel).apply is LinearKernel.apply
    if not (plain and kernel.always_fast and isinstance(module, LINEAR_TYPES)):
        return None
    try:
        op = LinearOp(module)
    except NotImplementedError:  # the general path raises it when the layer runs
        return None
    fast = kernel.fast

    def linear(x: Tensor, run: RunState) -> Tensor | None:
        if id(x) in run.pending or not x.requires_grad:
            return None  # owes a rescale, or is a constant: the general path
        weight, bias = run.weight_bias(module)
        out = fast(op, x, weight, bias, run)
        if x in run.roots:
            run.root_other_used = True
        return out

    return linear
