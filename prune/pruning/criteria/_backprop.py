"""Forward and backward passes over batches, and the base of criteria that score units by them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from prune.pruning.transformer import output_names


def per_unit(t: Tensor) -> Tensor:
    """Mean over positions: ``(B, C, *spatial) -> (B, C)`` (no-op for ``(B, C)``)."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def units_first(module: nn.Module, t: Tensor) -> Tensor:
    """A module's output with its units on axis 1: a Linear layer on tokens ``(B, T, D)`` has
    them on the last axis (``-> (B, D, T)``); every other layer on axis 1 already."""
    return t.movedim(-1, 1) if isinstance(module, nn.Linear) and t.dim() > 2 else t


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
    taken with ``torch.autograd.grad`` so that no parameter's ``.grad`` is touched. The units
    are moved to axis 1 first (:func:`units_first`). The model runs :func:`evaluated`.
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
                a, g = units_first(modules[n], outputs[n].detach()), units_first(modules[n], g)
                t = term(a, g).to(torch.float64).sum(0)  # (C,)
                totals[n] = totals[n] + t if n in totals else t
            count += x.shape[0]
    if count == 0:
        raise ValueError("batches were empty; criteria that need data need at least one batch")
    return {n: t / count for n, t in totals.items()}


class BackpropCriterion(Criterion):
    """Base of the unit criteria that read activations and loss gradients on labelled batches.

    A subclass defines :meth:`term`; a unit's score is its mean over samples
    (:func:`accumulate_units`), then normalised per layer. Heads are read at each head's
    output (``<attention>.heads_out``, its tokens and features are the head's positions), MLP
    neurons at ``fc1``'s output (the tokens are its positions).

    Args:
        normalize: divide each layer's scores by their L1 norm ("l2": their L2 norm, false:
            none).
    """

    needs: ClassVar[frozenset[str]] = frozenset({"batches"})
    targets: ClassVar[frozenset[str]] = frozenset({"units", "heads", "neurons"})
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
        return self._scores(model, {name: name for name in producers(groups)}, batches)

    def head_scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Batches
    ) -> dict[str, Tensor]:
        """``{attention: (heads,)}`` of :meth:`term` at ``<attention>.heads_out``."""
        return self._scores(model, output_names(model, groups, "heads"), batches)

    def neuron_scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Batches
    ) -> dict[str, Tensor]:
        """``{MLP: (hidden,)}`` of :meth:`term` at ``<MLP>.fc1``."""
        return self._scores(model, output_names(model, groups, "neurons"), batches)

    def _scores(
        self, model: nn.Module, read: Mapping[str, str], batches: Batches
    ) -> dict[str, Tensor]:
        """``{key: (C,)}``, each read at the output of the module ``read[key]``."""
        raw = accumulate_units(model, list(read.values()), batches, self.term)
        return {key: normalize_layer(raw[name], self.normalize) for key, name in read.items()}
