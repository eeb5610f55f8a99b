from __future__ import annotations

import pytest
import torch

from prune.evaluation.masking import (
    apply_mask,
    count,
    gaussian_blur,
    mask_top,
    pixel_relevance,
    relevance_order,
    removal_fill,
)


def test_relevance_order_sorts_descending_and_breaks_ties_by_fixed_permutation():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.0]])
    order = relevance_order(scores)
    assert order[0, 0].item() == 1
    assert set(order[0, 1:3].tolist()) == {2, 3}
    assert order[0, -1].item() == 4
    torch.testing.assert_close(order, relevance_order(scores))  # deterministic


def test_mask_top_selects_n_highest_or_lowest():
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert mask_top(scores, 2, largest=True).tolist() == [[True, False, True, False]]
    assert mask_top(scores, 1, largest=False).tolist() == [[False, False, False, True]]


def test_pixel_relevance_sums_channels_and_apply_mask_fills_all_channels():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 2, 2)
    assert pixel_relevance(x).shape == (2, 4)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, 1] = True
    fill = removal_fill(x, "zero", background=[-1.0, -2.0, -3.0])
    out = apply_mask(x, mask, fill)
    assert out[0, :, 0, 1].tolist() == [-1.0, -2.0, -3.0]
    assert torch.equal(out[1], x[1])


def test_removal_fill_mean_blur_and_constant():
    x = torch.randn(4, 2, 8, 8)
    torch.testing.assert_close(removal_fill(x, "mean").flatten(), x.mean((0, 2, 3)))
    assert removal_fill(x, 0.5).item() == 0.5
    blurred = removal_fill(x, "blur")
    assert blurred.shape == x.shape
    # a blur keeps constant images constant
    const = torch.full((1, 1, 8, 8), 3.0)
    torch.testing.assert_close(gaussian_blur(const, 2.0), const)


def test_removal_fill_rejects_unknown_removal_by_name():
    with pytest.raises(ValueError, match="noise"):
        removal_fill(torch.zeros(1, 1, 4, 4), "noise")


def test_count_rounds_and_checks_range():
    assert count(0.15, 784) == 118
    with pytest.raises(ValueError, match="fraction"):
        count(1.5, 10)
