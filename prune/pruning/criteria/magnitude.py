"""Magnitude criterion: the norm of each unit's incoming weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check, choice
from prune.pruning.criteria.base import (
    NORMALIZE_CHECK,
    Criterion,
    layer_norm,
    normalize_layer,
    producers,
    unit_weight,
)
from prune.pruning.groups import ChannelGroup
from prune.pruning.transformer import heads_of


class MagnitudeCriterion(Criterion):
    """L_p norm of each output unit's weights (Li et al. 2017, "Pruning filters", L1).

    Data free and cheap; the usual baseline for structured pruning. It ignores the bias and
    what follows the unit (a BatchNorm can rescale a small filter).

    Heads and MLP neurons: the norm of all the weights their cut removes, in and out (the
    group norm of Torch-Pruning's DepGraph, Fang et al. 2023): a head's q, k and v rows of
    ``qkv`` with its columns of ``proj``; a neuron's row of ``fc1`` with its column of ``fc2``.

    Args:
        p: norm degree, 1 or 2.
        normalize: divide each layer's scores by their L1 norm, so a global ranking does not
            simply prune the layers with the smallest weights (fan-in differs per layer).
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    targets: ClassVar[frozenset[str]] = frozenset({"units", "heads", "neurons"})
    config_checks: ClassVar[dict[str, Check]] = {"p": choice(1, 2), "normalize": NORMALIZE_CHECK}

    def __init__(self, p: int = 1, normalize: bool | str = True) -> None:
        if p not in (1, 2):
            raise ValueError(f"magnitude criterion p must be 1 or 2, got {p}")
        self.p, self.normalize = int(p), layer_norm(normalize)

    def scores(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, Tensor]:
        """``{producer: (C,)}`` weight norms."""
        out = {}
        for name in producers(groups):
            s = unit_weight(model.get_submodule(name)).double().norm(p=self.p, dim=1)
            out[name] = normalize_layer(s, self.normalize)
        return out

    def head_scores(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, Tensor]:
        """``{attention: (heads,)}`` norms of each head's ``qkv`` rows and ``proj`` columns."""
        out = {}
        for g in groups:
            attn = model.get_submodule(g.name)
            h, dh = heads_of(attn), attn.head_dim
            qkv = attn.qkv.weight.detach().double().view(3, h, dh, -1)  # rows (3, H, Dh)
            rows = qkv.transpose(0, 1).reshape(h, -1)  # (H, 3 * Dh * dim)
            columns = attn.proj.weight.detach().double().view(-1, h, dh).transpose(0, 1)
            weights = torch.cat([rows, columns.reshape(h, -1)], 1)  # (H, 4 * Dh * dim)
            out[g.name] = normalize_layer(weights.norm(p=self.p, dim=1), self.normalize)
        return out

    def neuron_scores(self, model: nn.Module, groups: Sequence[ChannelGroup]) -> dict[str, Tensor]:
        """``{MLP: (hidden,)}`` norms of each neuron's ``fc1`` row and ``fc2`` column."""
        out = {}
        for g in groups:
            mlp = model.get_submodule(g.name)
            weights = torch.cat([mlp.fc1.weight.detach(), mlp.fc2.weight.detach().T], 1)
            out[g.name] = normalize_layer(weights.double().norm(p=self.p, dim=1), self.normalize)
        return out
