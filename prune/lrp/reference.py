"""A rule's reference form as one autograd node: what runs a rule that has no kernel.

The node computes the layer's output in the forward and keeps its inputs. In the backward it
turns the incoming gradient into the output relevance (``R = y * g``), asks the rule for the
input relevance (:meth:`prune.lrp.rules.Rule.relevance`), and hands each input its relevance in
gradient form (``R / x``), or as it is where the input is the model's own (see
:mod:`prune.lrp.fast.base` for the two forms).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prune.lrp.rules.base import Rule, divide_by_input
from prune.lrp.state import RunState


class _ReferenceNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rule, layer, roots, *inputs):
        ctx.rule, ctx.layer, ctx.roots = rule, layer, roots
        ctx.save_for_backward(*inputs)  # an in-place change of an input is an error, not a lie
        return layer(*inputs)

    @staticmethod
    def backward(ctx, grad):
        inputs = ctx.saved_tensors
        with torch.no_grad():
            # no gradient, no relevance, even at an infinite output (a masked score: -inf * 0)
            relevance = torch.where(grad == 0, torch.zeros_like(grad), ctx.layer(*inputs) * grad)
            rel = ctx.rule.relevance(ctx.layer, *inputs, relevance=relevance)
            if isinstance(rel, Tensor):
                rel = (rel,)
            grads = [
                r if root else divide_by_input(r, x)
                for r, x, root in zip(rel, inputs, ctx.roots, strict=True)
            ]
        return None, None, None, *grads


def reference_apply(rule: Rule, layer: Callable[..., Tensor], inputs: tuple, run: RunState):
    """``layer(*inputs)`` with ``rule``'s reference form as its backward.

    ``inputs`` are tensors; those that need no gradient get their relevance absorbed.
    """
    if not any(t.requires_grad for t in inputs):
        return layer(*inputs)
    roots = tuple(run.is_root(t) for t in inputs)
    run.root_rule_used |= any(roots)
    return _ReferenceNode.apply(rule, layer, roots, *inputs)
