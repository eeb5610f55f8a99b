from __future__ import annotations

import pytest
import torch
from torch import nn

from prune.lrp.stats import RelevanceStats
from prune.pruning.criteria import (
    GradientCriterion,
    GradientXInputCriterion,
    LRPCriterion,
    MagnitudeCriterion,
    RandomCriterion,
    TaylorCriterion,
    VarianceCriterion,
)
from prune.pruning.groups import find_groups


def _batches(
    model: nn.Module, n: int = 2, batch: int = 8
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [
        (
            torch.randn(batch, *model.in_shape, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (batch,), generator=gen),
        )
        for _ in range(n)
    ]


def _widths(model: nn.Module) -> dict[str, int]:
    return {p: g.width for g in find_groups(model, None) for p in g.producers}


@pytest.mark.parametrize(
    "criterion",
    [
        LRPCriterion(),
        MagnitudeCriterion(),
        TaylorCriterion(),
        GradientCriterion(),
        RandomCriterion(),
    ],
    ids=lambda c: type(c).__name__,
)
def test_unit_criterion_scores_every_producer(criterion, tiny_resnet: nn.Module) -> None:
    widths = _widths(tiny_resnet)
    stats = RelevanceStats(num_classes=3, channels={p: torch.rand(w) for p, w in widths.items()})
    groups = find_groups(tiny_resnet, None)
    scores = criterion.scores(tiny_resnet, groups, stats=stats, batches=_batches(tiny_resnet))
    assert {p: s.shape for p, s in scores.items()} == {p: (w,) for p, w in widths.items()}
    assert all(s.dtype == torch.float64 for s in scores.values())


def test_magnitude_keeps_biggest_norm_channel(tiny_lenet: nn.Module) -> None:
    with torch.no_grad():
        tiny_lenet.features[0].weight[2] *= 10
    groups = find_groups(tiny_lenet, None)
    scores = MagnitudeCriterion(p=2, normalize=False).scores(tiny_lenet, groups)
    assert int(scores["features.0"].argmax()) == 2
    expected = tiny_lenet.features[0].weight.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(scores["features.0"], expected)


def test_lrp_keeps_high_relevance_channel_and_normalises(tiny_lenet: nn.Module) -> None:
    channels = {p: torch.ones(w, dtype=torch.float64) for p, w in _widths(tiny_lenet).items()}
    channels["features.3"][4] = 50.0
    signed = {p: -c for p, c in channels.items()}
    signed["features.3"][1] = 3.0
    net = {p: c.clone() for p, c in channels.items()}
    net["features.3"][0] = 60.0
    net["classifier.0"] *= 100  # another layer's scale: kept as is without normalisation
    stats = RelevanceStats(
        num_classes=3, channels=channels, channels_signed=signed, channels_unit_abs=net
    )
    groups = find_groups(tiny_lenet, None)
    scores = LRPCriterion().scores(tiny_lenet, groups, stats=stats)
    assert int(scores["features.3"].argmax()) == 4
    for s in scores.values():
        torch.testing.assert_close(s.abs().sum(), torch.tensor(1.0, dtype=torch.float64))
    signed_scores = LRPCriterion(aggregate="signed", normalize=False).scores(
        tiny_lenet, groups, stats
    )
    assert int(signed_scores["features.3"].argmax()) == 1
    net_scores = LRPCriterion(aggregate="unit_abs", normalize=False).scores(
        tiny_lenet, groups, stats
    )
    assert int(net_scores["features.3"].argmax()) == 0
    for name, s in net_scores.items():
        torch.testing.assert_close(s, net[name])


def test_lrp_names_a_bad_aggregate() -> None:
    with pytest.raises(ValueError, match=r"aggregate.*unit_abs.*'max'"):
        LRPCriterion(aggregate="max")


def test_lrp_names_missing_layer(tiny_mlp: nn.Module) -> None:
    stats = RelevanceStats(num_classes=3, channels={"layers.0": torch.ones(8)})
    with pytest.raises(KeyError, match=r"layers\.2"):
        LRPCriterion().scores(tiny_mlp, find_groups(tiny_mlp, None), stats=stats)


def test_lrp_requires_stats(tiny_mlp: nn.Module) -> None:
    with pytest.raises(ValueError, match="relevance"):
        LRPCriterion().scores(tiny_mlp, find_groups(tiny_mlp, None))


def test_lrp_input_scores_from_input_relevance(tiny_mlp: nn.Module) -> None:
    x = torch.zeros(1, 1, 4, 4)
    stats = RelevanceStats(num_classes=3, input=-torch.arange(16.0).view(1, 4, 4))
    stats.input_abs = stats.input.abs()
    scores = LRPCriterion().input_scores(tiny_mlp, x, stats=stats)
    assert scores.shape == (1, 4, 4)
    assert int(scores.argmax()) == 15
    assert (
        int(LRPCriterion(aggregate="signed").input_scores(tiny_mlp, x, stats=stats).argmax()) == 0
    )


def test_taylor_scores_dead_unit_zero_and_leaves_grads(tiny_mlp: nn.Module) -> None:
    with torch.no_grad():
        tiny_mlp.layers[0].weight[5] = 0
        tiny_mlp.layers[0].bias[5] = 0
    scores = TaylorCriterion().scores(
        tiny_mlp, find_groups(tiny_mlp, None), batches=_batches(tiny_mlp)
    )
    assert scores["layers.0"][5] == 0
    assert scores["layers.0"].argmin() == 5
    assert all(p.grad is None for p in tiny_mlp.parameters())


def test_gradient_scores_disconnected_unit_zero(tiny_mlp: nn.Module) -> None:
    with torch.no_grad():
        tiny_mlp.layers[2].weight[:, 3] = 0  # nothing downstream reads unit 3 of layers.0
    groups = find_groups(tiny_mlp, None)
    scores = GradientCriterion().scores(tiny_mlp, groups, batches=_batches(tiny_mlp))
    assert scores["layers.0"][3] == 0
    assert (scores["layers.0"][torch.arange(8) != 3] > 0).all()


def test_random_is_seeded(tiny_mlp: nn.Module) -> None:
    groups = find_groups(tiny_mlp, None)
    a = RandomCriterion(seed=1).scores(tiny_mlp, groups)
    b = RandomCriterion(seed=1).scores(tiny_mlp, groups)
    c = RandomCriterion(seed=2).scores(tiny_mlp, groups)
    assert torch.equal(a["layers.0"], b["layers.0"])
    assert not torch.equal(a["layers.0"], c["layers.0"])
    assert RandomCriterion().input_scores(tiny_mlp, torch.zeros(2, 1, 4, 4)).shape == (1, 4, 4)


def test_variance_ranks_varying_pixel_first(tiny_mlp: nn.Module) -> None:
    x = torch.zeros(10, 1, 4, 4, dtype=torch.float64)
    x[:, 0, 2, 3] = torch.arange(10.0)
    x[:, 0, 1, 1] = 0.1 * torch.arange(10.0)
    scores = VarianceCriterion().input_scores(
        tiny_mlp, x[:1], batches=[(x[:6], None), (x[6:], None)]
    )
    assert scores.shape == (1, 4, 4)
    torch.testing.assert_close(scores[0, 2, 3], x[:, 0, 2, 3].var(unbiased=False))
    assert int(scores.flatten().argsort(descending=True)[1]) == 5
    assert scores[0, 0, 0] == 0


def test_gradient_x_input_ignores_unused_pixel(tiny_mlp: nn.Module) -> None:
    with torch.no_grad():
        tiny_mlp.layers[0].weight[:, 6] = 0
    batches = _batches(tiny_mlp)
    scores = GradientXInputCriterion().input_scores(tiny_mlp, batches[0][0], batches=batches)
    assert scores.shape == (1, 4, 4)
    assert scores.flatten()[6] == 0
    assert (scores.flatten()[torch.arange(16) != 6] > 0).all()


def test_unit_only_criterion_refuses_inputs(tiny_mlp: nn.Module) -> None:
    with pytest.raises(TypeError, match="MagnitudeCriterion cannot score inputs"):
        MagnitudeCriterion().input_scores(tiny_mlp, torch.zeros(1, 1, 4, 4))
    with pytest.raises(TypeError, match="VarianceCriterion cannot score units"):
        VarianceCriterion().scores(tiny_mlp, [])


def test_magnitude_rejects_bad_p() -> None:
    with pytest.raises(ValueError, match="p must be 1 or 2, got 3"):
        MagnitudeCriterion(p=3)


def test_layer_normalisation_l1_l2_none_and_bad_values():
    from prune.pruning.criteria.base import layer_norm, normalize_layer

    s = torch.tensor([3.0, 4.0])
    assert torch.allclose(
        normalize_layer(s, "l1"), torch.tensor([3 / 7, 4 / 7], dtype=torch.float64)
    )
    assert torch.allclose(normalize_layer(s, "l2"), torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert torch.equal(normalize_layer(s, "none"), s.double())
    assert [layer_norm(v) for v in (True, False, "L2", "none")] == ["l1", "none", "l2", "none"]
    with pytest.raises(ValueError, match="normalize='l3'.*'l2'"):
        MagnitudeCriterion(normalize="l3")
