from __future__ import annotations

import pytest
import torch

from prune.evaluation.methods import GradientXInput
from prune.evaluation.roar import (
    dataset_mask,
    dataset_relevance,
    remove_and_retrain,
    remove_pixels,
    variance_scores,
)

from .conftest import BLOCK, SIDE, block_data


def test_dataset_mask_removes_k_least_or_most():
    scores = torch.tensor([0.3, 0.1, 0.9, 0.5])
    assert dataset_mask(scores, 2, "least").tolist() == [True, True, False, False]
    assert dataset_mask(scores, 1, "most").tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="k must be"):
        dataset_mask(scores, 5)


def test_dataset_relevance_of_block_net_lies_in_the_block(block_net, block_batch):
    x, _ = block_batch
    scores = dataset_relevance(GradientXInput(), block_net, x, batch_size=16).view(SIDE, SIDE)
    inside = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    inside[BLOCK] = True
    assert (scores[~inside] == 0).all() and (scores[inside] > 0).all()


def test_remove_and_retrain_keeps_accuracy_when_unimportant_pixels_go(block_net):
    x_train, y_train = block_data(64, seed=1)
    x_test, y_test = block_data(64, seed=2)
    scores = {"gxi": dataset_relevance(GradientXInput(), block_net, x_train)}
    calls = []

    def train_fn(xt, yt, xs, ys):
        # a stand-in "training": a fixed rule on the block's sum, which removal can destroy
        calls.append(1)
        pred = (xs[:, 0, BLOCK[0], BLOCK[1]].sum((1, 2)) > 0).long()
        return (pred == ys).double().mean().item()

    fill = torch.tensor(0.0, dtype=x_train.dtype)
    res = remove_and_retrain(scores, x_train, y_train, x_test, y_test, train_fn, [0, 9, 55], fill)
    assert set(res) == {"gxi", "random", "variance"}
    assert res["gxi"]["remove_least"][55] == res["gxi"]["remove_least"][0] > 0.9
    # with the block gone the rule always says class 0: chance level
    assert res["gxi"]["remove_most"][9] == (y_test == 0).double().mean().item()
    assert len(calls) < 3 * 2 * 3  # k = 0 trains once for all methods
    assert variance_scores(x_train).shape == (SIDE * SIDE,)
    assert (
        remove_pixels(x_test, dataset_mask(scores["gxi"], 9, "most"), fill)[:, 0][
            :, BLOCK[0], BLOCK[1]
        ]
        .eq(0)
        .all()
    )
