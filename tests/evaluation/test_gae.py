from __future__ import annotations

import pytest
import torch

from prune.evaluation.gae import (
    gae_reference,
    gae_scores,
    make_mosaic,
    masking_trajectory,
    mosaic_tiles,
    normalized_l1_distance,
)
from prune.evaluation.methods import GradientXInput, RandomAttribution


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_mosaic_tiles_come_from_the_scored_batch(batch):
    # image i is the constant i, so every quadrant tells which image it shows
    x = torch.arange(batch, dtype=torch.float64).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    classes = torch.arange(batch) % 4
    tiles, position = mosaic_tiles(classes, torch.Generator().manual_seed(0))
    mosaic = make_mosaic(x, tiles)
    quadrants = [
        mosaic[:, 0, :4, :4],
        mosaic[:, 0, :4, 4:],
        mosaic[:, 0, 4:, :4],
        mosaic[:, 0, 4:, 4:],
    ]
    for q, quad in enumerate(quadrants):
        assert torch.equal(quad, tiles[:, q].double().view(-1, 1, 1).expand(-1, 4, 4))
    idx = torch.arange(batch)
    assert torch.equal(tiles[idx, position], idx)  # the scored image sits at its position
    assert ((tiles >= 0) & (tiles < batch)).all()
    if batch == 1:
        assert (tiles == 0).all()
    else:
        partners = tiles[tiles != idx[:, None]].view(batch, 3)
        assert partners.shape == (batch, 3)
        # four classes in the batch: every mosaic shows four different classes
        tile_classes = classes[tiles]
        assert all(len(set(row.tolist())) == 4 for row in tile_classes)
    if batch == 4:
        assert all(sorted(row.tolist()) == [0, 1, 2, 3] for row in tiles)


def test_gae_reference_score_map_is_one_on_own_quadrant(block_net, block_batch):
    x, y = block_batch
    x, y = x[:8], y[:8]
    pred = block_net(x).argmax(1)
    ref = gae_reference(block_net, x, pred, y, torch.tensor(0.0).double(), steps=4)
    for i in range(8):
        q = ref.position[i].item()
        r, c = divmod(q, 2)
        assert (ref.score_map[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] == 1).all()
        assert (ref.score_map[i] <= 1 + 1e-9).all()


def test_masking_trajectory_masks_equal_fractions_in_both_orders(block_net, block_batch):
    x, _ = block_batch
    pred = block_net(x).argmax(1)
    fill = torch.tensor(-7.0, dtype=x.dtype)  # a value absent from the data
    steps = 5
    counts = {}
    for order in ("morf", "lerf"):
        inputs, logits, _ = masking_trajectory(block_net, x, pred, fill, steps, order)
        assert inputs.shape == (steps, *x.shape) and logits.shape == (steps, x.shape[0])
        counts[order] = (inputs == -7.0).flatten(2).sum(2)  # (T, B)
    expected = torch.tensor([round(k / steps * 64) for k in range(steps)])
    assert torch.equal(counts["morf"], expected[:, None].expand(-1, x.shape[0]))
    assert torch.equal(counts["lerf"], counts["morf"])


def test_gae_gradient_x_input_beats_random_on_block_data(block_net, block_batch):
    x, y = block_batch
    pred = block_net(x).argmax(1)
    ref = gae_reference(block_net, x, pred, y, torch.tensor(0.0).double(), steps=5)
    gxi = gae_scores(GradientXInput(), block_net, ref, batch_size=64)
    rnd = gae_scores(RandomAttribution(0), block_net, ref, batch_size=64)
    for scores in (gxi, rnd):
        assert scores["gae"].shape == (64,)
        assert ((scores["gae"] >= 0) & (scores["gae"] <= 1)).all()
        assert ((scores["robustness"] >= -1 - 1e-9) & (scores["robustness"] <= 1 + 1e-9)).all()
    assert gxi["faithfulness"].mean() > rnd["faithfulness"].mean() + 0.3
    assert gxi["gae"].mean() > rnd["gae"].mean() + 0.1


def test_normalized_l1_distance_bounds():
    u = torch.tensor([[1.0, 0.0]])
    assert normalized_l1_distance(u, u).item() == 0.0
    assert normalized_l1_distance(u, -u).item() == pytest.approx(1.0)
