"""RelevanceStats on token features: the units of a linear layer lie on the last axis."""

from __future__ import annotations

import torch
from torch import nn

from prune.lrp.stats import RelevanceStats, unit_dim


def test_token_relevance_is_summed_per_feature_over_tokens() -> None:
    gen = torch.Generator().manual_seed(0)
    rel = torch.randn(4, 7, 5, generator=gen, dtype=torch.float64)  # (B, T, D)
    labels = torch.tensor([0, 1, 1, 2])
    stats = RelevanceStats(num_classes=3, unit_dims={"mlp.fc1": unit_dim(nn.Linear(3, 5))})
    stats.update(None, {"mlp.fc1": rel.clone()}, labels, consume=True)
    torch.testing.assert_close(stats.channels["mlp.fc1"], rel.abs().sum((0, 1)))
    torch.testing.assert_close(stats.channels_signed["mlp.fc1"], rel.sum((0, 1)))
    torch.testing.assert_close(stats.channels_unit_abs["mlp.fc1"], rel.sum(1).abs().sum(0))
    per_class = torch.stack([rel[labels == k].abs().sum((0, 1)) for k in range(3)])
    torch.testing.assert_close(stats.per_class_channels["mlp.fc1"], per_class)
    assert stats.cpu().unit_dims == {"mlp.fc1": -1}


def test_channel_axis_stays_the_default() -> None:
    rel = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    stats = RelevanceStats(num_classes=2)
    stats.update(None, {"conv": rel}, torch.tensor([0, 1]))
    torch.testing.assert_close(stats.channels["conv"], rel.abs().sum((0, 2, 3)))
    assert unit_dim(nn.Conv2d(1, 3, 3)) == 1
