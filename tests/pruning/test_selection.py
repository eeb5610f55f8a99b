from __future__ import annotations

import pytest
import torch

from prune.pruning.schedule import ratio_at
from prune.pruning.selection import keep_top, rank, select_global, select_per_layer


def test_keep_top_keeps_best_sorted() -> None:
    assert keep_top(torch.tensor([0.1, 0.9, 0.5, 0.7]), 2) == [1, 3]


def test_rank_breaks_ties_by_seed_reproducibly() -> None:
    flat = torch.ones(50)
    a = rank(flat, torch.Generator().manual_seed(1))
    b = rank(flat, torch.Generator().manual_seed(1))
    c = rank(flat, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a[:5].tolist() != [0, 1, 2, 3, 4]  # no top-left-corner bias


def test_select_global_ranks_across_groups() -> None:
    scores = {"a": torch.tensor([0.9, 0.8, 0.7]), "b": torch.tensor([0.1, 0.2, 0.3])}
    kept = select_global(scores, total_keep=4, min_keep={"a": 1, "b": 1})
    assert kept == {"a": [0, 1, 2], "b": [2]}


def test_select_global_respects_min_width() -> None:
    scores = {"a": torch.tensor([0.9, 0.8, 0.7]), "b": torch.tensor([0.1, 0.2, 0.3])}
    kept = select_global(scores, total_keep=3, min_keep={"a": 1, "b": 2})
    assert kept == {"a": [0], "b": [1, 2]}
    assert select_global(scores, total_keep=1, min_keep={"a": 1, "b": 1}) == {"a": [0], "b": [2]}


def test_select_per_layer_keeps_counts() -> None:
    scores = {"a": torch.tensor([0.9, 0.8, 0.7]), "b": torch.tensor([0.1, 0.2, 0.3])}
    assert select_per_layer(scores, {"a": 1, "b": 2}) == {"a": [0], "b": [1, 2]}


def test_schedule_constant_and_geometric() -> None:
    assert ratio_at("constant", 0.5, 1, 2) == pytest.approx(0.25)
    assert ratio_at("geometric", 0.75, 1, 2) == pytest.approx(0.5)  # keep sqrt(0.25)
    for name in ("constant", "geometric"):
        assert ratio_at(name, 0.6, 0, 3) == 0.0
        assert ratio_at(name, 0.6, 3, 3) == pytest.approx(0.6)


def test_schedule_rejects_unknown_name() -> None:
    with pytest.raises(KeyError, match="linear"):
        ratio_at("linear", 0.5, 1, 2)
