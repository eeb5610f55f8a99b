"""Importance adapter: our per-producer scores as a Torch-Pruning ``Importance`` of a group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch_pruning as tp
from torch import Tensor, nn

from prune.pruning.groups import ChannelGroup, is_producer_dep


def combine(scores: Sequence[Tensor]) -> Tensor:
    """One score per unit for producers cut together.

    A single producer keeps its scores unchanged. Several producers (a residual add couples
    the stem conv with each block's last conv) are L1-normalised each, so no producer dominates
    by scale, averaged, and rescaled by their mean L1 norm, so a combined group stays comparable
    with single-producer groups in a global ranking.

    Args:
        scores: one ``(C,)`` tensor per producer, same C.

    Returns:
        ``(C,)`` float64 scores; higher means keep.
    """
    scores = [s.detach().to(torch.float64).flatten() for s in scores]
    if len(scores) == 1:
        return scores[0]
    norms = [s.abs().sum().clamp_min(torch.finfo(torch.float64).tiny) for s in scores]
    mean_norm = torch.stack(norms).mean()
    return torch.stack([s / n for s, n in zip(scores, norms, strict=True)]).mean(0) * mean_norm


class ScoreImportance(tp.importance.Importance):
    """Feeds precomputed per-producer scores to Torch-Pruning.

    Usable wherever Torch-Pruning wants an ``Importance`` (e.g. its ``MetaPruner``); our own
    selection calls it through :func:`group_scores`.

    Args:
        scores: ``{producer name: (C,)}`` as returned by a criterion.
        model: the model the scores belong to (to map modules to names).
    """

    def __init__(self, scores: Mapping[str, Tensor], model: nn.Module) -> None:
        self.scores = dict(scores)
        self.names = {m: n for n, m in model.named_modules()}

    def __call__(self, group: tp.dependency.Group) -> Tensor:
        """Combined ``(len(root idxs),)`` scores of the producers in a Torch-Pruning group."""
        graph = group._DG
        parts = []
        for item in group:
            name = self.names.get(item.dep.target.module)
            if name in self.scores and is_producer_dep(graph, item.dep):
                parts.append(self.scores[name][list(item.idxs)])
        if not parts:
            raise KeyError(f"no scores for any producer of group rooted at {group[0].dep.target}")
        return combine(parts)


def group_scores(
    model: nn.Module,
    graph: tp.DependencyGraph,
    groups: Sequence[ChannelGroup],
    scores: Mapping[str, Tensor],
) -> dict[str, Tensor]:
    """``{group name: (width,)}`` combined scores, via :class:`ScoreImportance`.

    Raises:
        KeyError: naming a producer the criterion did not score.
        ValueError: naming a producer whose score has the wrong length.
    """
    for g in groups:
        for p in g.producers:
            if p not in scores:
                raise KeyError(f"criterion returned no scores for producer {p!r}")
            if scores[p].numel() != g.width:
                raise ValueError(
                    f"scores for {p!r} have {scores[p].numel()} entries, the layer has {g.width} "
                    "units (were the stats recorded on another model?)"
                )
    importance = ScoreImportance(scores, model)
    out = {}
    for g in groups:
        root = model.get_submodule(g.name)
        handler = graph.get_pruner_of_module(root).prune_out_channels
        out[g.name] = importance(graph.get_pruning_group(root, handler, list(range(g.width))))
    return out
