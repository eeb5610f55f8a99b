from __future__ import annotations

import torch

from prune.evaluation.methods import GradientXInput, RandomAttribution
from prune.evaluation.removal import feature_removal


def test_feature_removal_on_linear_model_matches_hand_computation(linear_net):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64)
    logits = linear_net(x)
    pred = logits.argmax(1)
    a = GradientXInput()(linear_net, x, pred)
    out = feature_removal(linear_net, x, pred, a, torch.tensor(0.0).double(), fraction=0.25)
    # 4 of 16 pixels: with fill 0, removing pixel i changes every logit by -w_ki x_i
    w = linear_net[1].weight
    contrib = w[:, None, :] * x.flatten(1)[None]  # (K, B, P)
    own = contrib[pred, torch.arange(5)]  # (B, P) = gradient x input
    top = own.topk(4, dim=1).indices
    low = (-own).topk(4, dim=1).indices
    keep = torch.ones(5, 16, dtype=torch.bool)
    for idx, name in ((low, "kept"), (top, "removed")):
        m = keep.clone().scatter_(1, idx, False)
        expected = (contrib * m[None]).sum(2).T  # (B, K)
        conf = expected.softmax(1).gather(1, pred[:, None]).squeeze(1)
        # float64 throughout: only rounding differences
        torch.testing.assert_close(getattr(out, f"confidence_{name}"), conf)
        assert torch.equal(getattr(out, f"correct_{name}"), expected.argmax(1) == pred)
    assert out.correct_original.all()


def test_feature_removal_random_keeps_less_than_gradient_x_input(block_net, block_batch):
    x, y = block_batch
    pred = block_net(x).argmax(1)
    fill = torch.tensor(0.0, dtype=x.dtype)
    gxi = feature_removal(block_net, x, y, GradientXInput()(block_net, x, pred), fill, 0.15)
    rnd = feature_removal(block_net, x, y, RandomAttribution(0)(block_net, x, pred), fill, 0.15)
    s_gxi, s_rnd = gxi.summary(), rnd.summary()
    # removing the block (9 of 64 pixels ~ 15%) destroys the evidence; random pixels rarely do
    assert s_gxi["removal/conf_removed"] < s_rnd["removal/conf_removed"] - 0.2
    assert s_gxi["removal/acc_kept"] >= s_rnd["removal/acc_kept"]
    assert s_gxi["removal/conf_kept"] >= s_gxi["removal/conf_original"] - 1e-9
