"""Forward and backward passes over batches, and the base of criteria that score units by them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.checks import Check
from prune.pruning.criteria.base import (
    NORMALIZE_CHECK,
    Batches,
    Criterion,
    layer_norm,
    normalize_layer,
    producers,
)
from prune.pruning.groups import ChannelGroup


def per_unit(t: Tensor) -> Tensor:
    """Mean over positions: ``(B, C, *spatial) -> (B, C)`` (no-op for ``(B, C)``)."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


@contextlib.contextmanager
def evaluated(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode (BatchNorm with running statistics) with gradients enabled;
    its mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        model.train(was_training)


def _recorder(store: dict[str, Tensor], name: str) -> Callable[..., None]:
    def hook(_module: nn.Module, _args: object, out: Tensor) -> None:
        store[name] = out

    return hook


def accumulate_units(
    model: nn.Module,
    names: Sequence[str],
    batches: Batches,
    term: Callable[[Tensor, Tensor], Tensor],
) -> dict[str, Tensor]:
    """Mean over samples of ``term(activation, gradient) -> (B, C)`` for each named module.

    The gradient is that of the summed cross-entropy loss with respect to the module's output,
    taken with ``torch.autograd.grad`` so that no parameter's ``.grad`` is touched. The model
    runs :func:`evaluated`.
    """
    modules = {n: model.get_submodule(n) for n in names}
    totals: dict[str, Tensor] = {}
    count = 0
    with evaluated(model):
        for x, y in batches:
            outputs: dict[str, Tensor] = {}
            handles = [m.register_forward_hook(_recorder(outputs, n)) for n, m in modules.items()]
            try:
                logits = model(x.detach().requires_grad_(x.is_floating_point()))
            finally:
                for h in handles:
                    h.remove()
            loss = F.cross_entropy(logits, y, reduction="sum")
            grads = torch.autograd.grad(loss, [outputs[n] for n in names])
            for n, g in zip(names, grads, strict=True):
                t = term(outputs[n].detach(), g).to(torch.float64).sum(0)  # (C,)
                totals[n] = totals[n] + t if n in totals else t
            count += x.shape[0]
    if count == 0:
        raise ValueError("batches were empty; criteria that need data need at least one batch")
    return {n: t / count for n, t in totals.items()}


class BackpropCriterion(Criterion):
    """Base of the unit criteria that read activations and loss gradients on labelled batches.

    A subclass defines :meth:`term`; a unit's score is its mean over samples
    (:func:`accumulate_units`), then normalised per layer.

    Args:
        normalize: divide each layer's scores by their L1 norm ("l2": their L2 norm, false:
            none).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"batches"})
    targets: ClassVar[frozenset[str]] = frozenset({"units"})
    config_checks: ClassVar[dict[str, Check]] = {"normalize": NORMALIZE_CHECK}

    def __init__(self, normalize: bool | str = True) -> None:
        self.normalize = layer_norm(normalize)

    @staticmethod
    def term(activation: Tensor, gradient: Tensor) -> Tensor:
        """``(B, C, *spatial)`` activation and loss gradient of a unit -> ``(B, C)`` terms."""
        raise NotImplementedError("a BackpropCriterion subclass defines term(activation, gradient)")

    def scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Batches
    ) -> dict[str, Tensor]:
        """``{producer: (C,)}`` mean of :meth:`term` over samples, normalised per layer."""
        raw = accumulate_units(model, producers(groups), batches, self.term)
        return {n: normalize_layer(s, self.normalize) for n, s in raw.items()}
