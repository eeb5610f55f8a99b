from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prune.lrp.stats import RelevanceStats
from prune.pruning.criteria import (
    Criterion,
    GradientCriterion,
    GradientXInputCriterion,
    LRPCriterion,
    MagnitudeCriterion,
    RandomCriterion,
    TaylorCriterion,
    VarianceCriterion,
)
from prune.pruning.groups import find_groups
from prune.pruning.pruner import Pruner


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
    needed = criterion.needed({"stats": stats, "batches": _batches(tiny_resnet)})
    scores = criterion.scores(tiny_resnet, groups, **needed)
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


def test_needed_gives_exactly_what_a_criterion_declares() -> None:
    available = {"stats": "S", "batches": "B", "other": "O"}
    assert LRPCriterion().needed(available) == {"stats": "S"}
    assert TaylorCriterion().needed(available) == {"batches": "B"}
    assert VarianceCriterion().needed(available) == {"batches": "B"}
    assert MagnitudeCriterion().needed(available) == {}
    assert RandomCriterion().needed({}) == {}
    with pytest.raises(ValueError, match=r"LRPCriterion\(.*\) needs stats=\.\.\. \(relevance"):
        LRPCriterion().needed({"stats": None, "batches": "B"})
    with pytest.raises(ValueError, match=r"needs batches=\.\.\. \(batches of \(x, y\)"):
        GradientXInputCriterion().needed({"stats": "S"})


def test_criterion_whose_needs_and_signature_disagree_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Wrong\.scores takes .*'batches'.*needs=\['stats'\]"):

        class Wrong(Criterion):
            needs = frozenset({"stats"})

            def scores(self, model, groups, batches):
                return {}

    with pytest.raises(TypeError, match=r"Unknown\.needs holds \['labels'\]; allowed"):

        class Unknown(Criterion):
            needs = frozenset({"labels"})

    with pytest.raises(TypeError, match=r"NoInputs does not implement input_scores"):

        class NoInputs(Criterion):
            targets = frozenset({"inputs"})

    class Fine(Criterion):
        needs = frozenset({"stats", "batches"})
        targets = frozenset({"inputs"})

        def input_scores(self, model, example_input, batches, stats):
            return example_input[0]

    assert Fine().input_scores(
        None, torch.ones(1, 2), **Fine().needed(dict.fromkeys(("stats", "batches"), 1))
    ).shape == (2,)


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


def test_backprop_criteria_match_an_independent_computation(tiny_lenet: nn.Module) -> None:
    model = copy.deepcopy(tiny_lenet)
    names = [p for g in find_groups(model, None) for p in g.producers]
    batches = _batches(model)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_m, _a, out):
            out.retain_grad()
            outputs[name] = out

        return hook

    for name in names:
        model.get_submodule(name).register_forward_hook(keep(name))
    taylor = dict.fromkeys(names, 0.0)
    gradient = dict.fromkeys(names, 0.0)
    for x, y in batches:
        nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
        for name in names:
            a, g = outputs[name], outputs[name].grad
            dims = tuple(range(2, a.dim()))
            prod, mag = (a * g).detach(), g.abs()
            taylor[name] = taylor[name] + (prod.mean(dims) if dims else prod).abs().sum(0)
            gradient[name] = gradient[name] + (mag.mean(dims) if dims else mag).sum(0)
    groups = find_groups(tiny_lenet, None)
    got_taylor = TaylorCriterion(normalize=False).scores(tiny_lenet, groups, batches=batches)
    got_gradient = GradientCriterion(normalize="l2").scores(tiny_lenet, groups, batches=batches)
    for name in names:
        # float64 throughout; only the summation order differs
        torch.testing.assert_close(got_taylor[name], taylor[name] / 16, rtol=1e-12, atol=0)
        expected = gradient[name] / gradient[name].norm()
        torch.testing.assert_close(got_gradient[name], expected, rtol=1e-12, atol=0)


PINNED_UNITS = {
    "magnitude": {"features.0": [0, 1, 2, 3], "features.3": [2, 3, 4, 5], "classifier.0": [2]},
    "taylor": {"features.0": [0, 1, 2, 3], "features.3": [2, 5], "classifier.0": [1, 6, 7]},
    "gradient": {"features.0": [0, 1, 2, 3], "features.3": [2, 3, 5], "classifier.0": [4, 6]},
    "random": {"features.0": [0, 1, 3], "features.3": [0, 1, 3], "classifier.0": [1, 4, 7]},
}
PINNED_INPUTS = {
    "lrp": [58, 74, 115, 190, 287, 294],
    "variance": [41, 221, 229, 331, 352, 396],
    "gradient_x_input": [168, 189, 211, 233, 251, 272],
}
CRITERIA = {
    "magnitude": MagnitudeCriterion,
    "taylor": TaylorCriterion,
    "gradient": GradientCriterion,
    "random": lambda: RandomCriterion(seed=4),
    "lrp": LRPCriterion,
    "variance": VarianceCriterion,
    "gradient_x_input": GradientXInputCriterion,
}


@pytest.mark.parametrize("name", [*PINNED_UNITS, *PINNED_INPUTS])
def test_seeded_plans_stay_the_same(name: str, build_model) -> None:
    """The same seed gives the same plan: a change of a criterion's scores shows here."""
    model = build_model("lenet", seed=0)
    batches = _batches(model)
    gen = torch.Generator().manual_seed(4)
    stats = RelevanceStats(
        num_classes=3, input=torch.randn(*model.in_shape, generator=gen, dtype=torch.float64)
    )
    stats.input_abs = stats.input.abs()
    criterion = CRITERIA[name]()
    if name in PINNED_UNITS:
        plan = Pruner(criterion, ratio=0.5, seed=1).plan(model, batches=batches)
        assert plan.keep == PINNED_UNITS[name]
    else:
        pruner = Pruner(criterion, target="inputs", keep=6, seed=1)
        assert pruner.plan(model, stats=stats, batches=batches).input_keep == PINNED_INPUTS[name]
