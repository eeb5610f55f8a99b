"""LRP criterion: keep what carries relevance ("pruning by explaining", Yeom et al. 2021)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, choice
from prune.pruning.criteria.base import (
    NORMALIZE_CHECK,
    Criterion,
    layer_norm,
    normalize_layer,
    producers,
)
from prune.pruning.groups import ChannelGroup
from prune.pruning.transformer import output_names

if TYPE_CHECKING:
    from prune.lrp import RelevanceStats

log = logging.getLogger(__name__)


def _checked(name: str, scores: Tensor) -> Tensor:
    """Refuse NaN/inf scores (naming the layer); warn about a layer without any relevance."""
    if not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).sum())
        raise ValueError(
            f"relevance of {name!r} is NaN or infinite for {bad} of {scores.numel()} units; "
            "refusing to prune by it (check weights and inputs, or raise lrp.epsilon)"
        )
    if scores.numel() and not bool(scores.any()):
        message = (
            f"relevance of {name!r} is zero for every unit: it carries no relevance on the "
            "reference set, so its units rank below every unit that does (global ranking cuts "
            "it first, down to pruner.min_width)"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        log.warning(message)
    return scores


class LRPCriterion(Criterion):
    """Relevance of each unit or input element, summed over the reference samples.

    Units: per channel, the sum of |R| over samples and positions at the producer's output
    (``stats.channels``), normalised per layer so that layers rank together globally (Yeom et
    al. 2021). LRP tends to keep the costly early filters, so compare criteria at
    equal FLOPs. Inputs: ``stats.input_abs`` (sum of |R| per element). The first-layer rule
    must depend on the pixel values (epsilon, z-B); a flat or w-square rule there gives every
    pixel the same score (measured: worse than random pixels).

    Heads: the relevance at each head's output, ``softmax(q k^T) v`` of that head before
    ``proj`` (the output of ``<attention>.heads_out``), summed over tokens and the head's
    features. Hatefi et al. 2024 read it at the head's attention weights (the softmax output),
    summed over keys; under AttnLRP's uniform rule for ``A @ v`` that is half of the head's
    output relevance per query token, and under CP-LRP, which holds the attention weights
    constant, it is zero, so the head's output is the place that works for every composite.
    MLP neurons: the relevance at ``fc1``'s output, per hidden neuron, summed over tokens
    (as Hatefi et al. 2024).

    Degenerate relevance, by rule:

    - NaN or infinite relevance in any unit or input element raises a ``ValueError`` naming
      the layer; it is never turned into a plan.
    - A layer whose relevance is zero for *every* unit (dead units, or relevance that never
      reaches it) gets score 0 for all its units, with a warning naming it. Zero ranks below
      every unit that carries relevance, so global ranking removes such a layer's units first,
      but never below ``pruner.min_width`` (every group keeps that many, chosen by the seeded
      tie-break); per-layer ranking cuts it by the common fraction like any other layer. An
      all-zero input relevance is warned about the same way (ties then fall to the seed).

    Args:
        aggregate: how a unit's relevance is summed over the reference samples: ``abs``, |R|
            at every position (Yeom et al.); ``signed``, R itself (keeps units that speak *for*
            the explained class, drops those that speak against it); ``unit_abs``, the size of
            each unit's net relevance per sample (positions summed first, then |.|, as Taylor's
            ``|sum a*g|``; for inputs and the neurons of dense layers the same as ``abs``;
            for a head, its tokens and features summed first).
        normalize: divide each layer's unit scores by their L1 norm (inputs are unaffected).
            LRP conserves relevance from layer to layer, so unnormalised scores already share
            one scale (the explained output's) and rank together globally as they are.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"stats"})
    targets: ClassVar[frozenset[str]] = frozenset({"units", "inputs", "heads", "neurons"})

    AGGREGATES: ClassVar[tuple[str, ...]] = ("abs", "signed", "unit_abs")
    config_checks: ClassVar[dict[str, Check]] = {
        "aggregate": choice(*AGGREGATES),
        "normalize": NORMALIZE_CHECK,
    }

    def __init__(self, aggregate: str = "abs", normalize: bool | str = True) -> None:
        if aggregate not in self.AGGREGATES:
            raise ValueError(
                f"pruner.criterion.aggregate must be one of {self.AGGREGATES}, got {aggregate!r}"
            )
        self.aggregate, self.normalize = aggregate, layer_norm(normalize)

    def scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], stats: RelevanceStats
    ) -> dict[str, Tensor]:
        """``{producer: (C,)}`` from the recorded unit relevance."""
        return self._from_stats(stats, {name: name for name in producers(groups)})

    def head_scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], stats: RelevanceStats
    ) -> dict[str, Tensor]:
        """``{attention: (heads,)}`` from the relevance recorded at ``<attention>.heads_out``."""
        return self._from_stats(stats, output_names(model, groups, "heads"))

    def neuron_scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], stats: RelevanceStats
    ) -> dict[str, Tensor]:
        """``{MLP: (hidden,)}`` from the relevance recorded at ``<MLP>.fc1``."""
        return self._from_stats(stats, output_names(model, groups, "neurons"))

    def _from_stats(self, stats: RelevanceStats, recorded: Mapping[str, str]) -> dict[str, Tensor]:
        """``{key: (C,)}``, each from the stats of the module ``recorded[key]``."""
        source = {
            "abs": stats.channels,
            "signed": stats.channels_signed,
            "unit_abs": stats.channels_unit_abs,
        }[self.aggregate]
        out = {}
        for key, name in recorded.items():
            if name not in source:
                raise KeyError(
                    f"relevance stats hold no units for {name!r}; recorded: {sorted(source)} "
                    "(pass Pruner.record_names(model) as the LRP record list)"
                )
            s = _checked(name, source[name].detach().to(torch.float64))
            out[key] = normalize_layer(s, self.normalize)
        return out

    def input_scores(
        self, model: nn.Module, example_input: Tensor, stats: RelevanceStats
    ) -> Tensor:
        """Summed input relevance, shaped like one sample."""
        s = stats.input if self.aggregate == "signed" else stats.input_abs
        if s is None:
            raise ValueError("relevance stats hold no input relevance; record it for inputs")
        if tuple(s.shape) != tuple(example_input.shape[1:]):
            raise ValueError(
                f"input relevance has shape {tuple(s.shape)}, samples have "
                f"{tuple(example_input.shape[1:])}"
            )
        return _checked("input", s.detach().to(torch.float64))
