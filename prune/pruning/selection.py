"""Selection: which units or inputs to keep, given scores and how many to keep."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def rank(scores: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Indices of ``scores`` best first; exact ties are broken by a seeded permutation.

    Breaking ties at random rather than by index matters when a criterion is flat (e.g. an LRP
    composite with a flat first-layer rule gives every pixel the same score): index order would
    keep the top-left corner of every image.

    Args:
        scores: ``(N,)`` scores, higher means keep.
        generator: source of the tie-breaking permutation; index order when None.

    Returns:
        ``(N,)`` long indices.
    """
    scores = scores.detach().flatten().to("cpu", torch.float64)
    n = scores.numel()
    perm = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
    order = torch.sort(scores[perm], descending=True, stable=True).indices
    return perm[order]


def keep_top(scores: Tensor, k: int, generator: torch.Generator | None = None) -> list[int]:
    """Sorted indices of the ``k`` best scores."""
    if not 0 <= k <= scores.numel():
        raise ValueError(f"cannot keep {k} of {scores.numel()} entries")
    return sorted(rank(scores, generator)[:k].tolist())


def select_per_layer(
    scores: Mapping[str, Tensor],
    keep: Mapping[str, int],
    generator: torch.Generator | None = None,
) -> dict[str, list[int]]:
    """Per-layer ranking: keep the ``keep[name]`` best units of each group."""
    return {name: keep_top(s, int(keep[name]), generator) for name, s in scores.items()}


def select_global(
    scores: Mapping[str, Tensor],
    total_keep: int,
    min_keep: Mapping[str, int],
    generator: torch.Generator | None = None,
) -> dict[str, list[int]]:
    """Global ranking (Yeom et al. 2021): the ``total_keep`` best units over all groups.

    Each group first keeps its ``min_keep[name]`` best units; the remaining budget goes to
    the best of all other units, whatever their group. Scores must be comparable across
    groups (normalise them per layer in the criterion).

    Args:
        scores: ``{group: (C,)}`` scores.
        total_keep: units to keep over all groups; clipped to ``[sum(min_keep), sum(C)]``.
        min_keep: floor per group (at most its width).
        generator: tie-breaking source.

    Returns:
        ``{group: sorted kept indices}``.
    """
    kept: dict[str, list[int]] = {}
    pool_scores, pool_owner, pool_index = [], [], []
    for name, s in scores.items():
        order = rank(s, generator)
        floor = min(int(min_keep.get(name, 1)), s.numel())
        kept[name] = order[:floor].tolist()
        rest = order[floor:]
        pool_scores.append(s.detach().flatten().to("cpu", torch.float64)[rest])
        pool_owner += [name] * rest.numel()
        pool_index.append(rest)
    budget = int(total_keep) - sum(len(v) for v in kept.values())
    if budget > 0 and pool_owner:
        index = torch.cat(pool_index)
        for j in rank(torch.cat(pool_scores), generator)[:budget].tolist():
            kept[pool_owner[j]].append(int(index[j]))
    return {name: sorted(v) for name, v in kept.items()}
