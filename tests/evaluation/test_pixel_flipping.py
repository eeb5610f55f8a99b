from __future__ import annotations

import pytest
import torch

from prune.evaluation.methods import GradientXInput, RandomAttribution
from prune.evaluation.pixel_flipping import FlipCurves, aopc, flip_curve, flip_fractions


def test_flip_fractions_from_count_or_list():
    assert flip_fractions(4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert flip_fractions([0.5, 0.1]) == [0.0, 0.1, 0.5]
    with pytest.raises(ValueError, match="flip"):
        flip_fractions([1.5])


def test_flip_curve_logits_on_linear_model_equal_sorted_contributions(linear_net):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 1, 0])
    a = GradientXInput()(linear_net, x, target)
    fractions = flip_fractions(16)  # one pixel per step
    fill = torch.tensor(0.0, dtype=x.dtype)
    morf = flip_curve(linear_net, x, a, target, fractions, fill, "morf", "logit")
    lerf = flip_curve(linear_net, x, a, target, fractions, fill, "lerf", "logit")
    # with fill 0 the target logit drops by exactly the removed contribution w_i x_i
    contrib = a.flatten(1)
    total = contrib.sum(1, keepdim=True)
    desc = contrib.sort(1, descending=True).values
    expected_morf = torch.cat([total, total - desc.cumsum(1)], 1)
    expected_lerf = torch.cat([total, total - desc.flip(1).cumsum(1)], 1)
    torch.testing.assert_close(morf, expected_morf)  # float64: rounding only
    torch.testing.assert_close(lerf, expected_lerf)
    # MoRF is the steepest possible descent for a linear model
    assert (aopc(morf) >= aopc(lerf)).all()


def test_aopc_of_constant_curve_is_zero_and_of_drop_is_mean_drop():
    curve = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.5, 0.0]])
    torch.testing.assert_close(aopc(curve), torch.tensor([0.0, 0.5]))


def test_flip_curves_random_scores_below_gradient_x_input(block_net, block_batch):
    x, _ = block_batch
    pred = block_net(x).argmax(1)
    fill = torch.tensor(0.0, dtype=x.dtype)
    fr = flip_fractions(8)

    def curves(method):
        a = method(block_net, x, pred)
        return FlipCurves(
            fr,
            flip_curve(block_net, x, a, pred, fr, fill, "morf"),
            flip_curve(block_net, x, a, pred, fr, fill, "lerf"),
        ).summary()

    gxi, rnd = curves(GradientXInput()), curves(RandomAttribution(0))
    assert gxi["flip/aopc_morf"] > rnd["flip/aopc_morf"] + 0.1
    assert gxi["flip/abpc"] > rnd["flip/abpc"] + 0.1


def test_flip_curve_rejects_unknown_order():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="sideways"):
        flip_curve(torch.nn.Flatten(), x, x, torch.tensor([0]), [0.0], x, "sideways")
