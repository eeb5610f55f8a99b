from __future__ import annotations

import pytest
import torch
from torch import nn

from prune.lrp.stats import RelevanceStats
from prune.pruning.criteria import (
    LRPCriterion,
    MagnitudeCriterion,
    RandomCriterion,
    VarianceCriterion,
)
from prune.pruning.groups import find_groups
from prune.pruning.pruner import Pruner
from prune.pruning.surgery import apply_plan


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 1.5}, r"pruner\.ratio must be in \[0, 1\), got 1\.5"),
        ({"ratio": None}, "ratio.*keep"),
        ({"keep": 0}, "pruner.keep must be an integer >= 1, got 0"),
        ({"target": "pixels"}, "pruner.target must be one of .*'units', 'inputs'.*got 'pixels'"),
        ({"rounds": 0}, "pruner.rounds must be an integer >= 1, got 0"),
        ({"schedule": "cosine"}, "pruner.schedule must be one of .*constant.*got 'cosine'"),
        ({"min_width": 0}, "pruner.min_width must be an integer >= 1, got 0"),
    ],
)
def test_pruner_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Pruner(RandomCriterion(), **kwargs)


def test_pruner_refuses_criterion_that_cannot_score_target() -> None:
    with pytest.raises(ValueError, match="VarianceCriterion cannot score target='units'"):
        Pruner(VarianceCriterion(), target="units")
    with pytest.raises(ValueError, match="MagnitudeCriterion cannot score target='inputs'"):
        Pruner(MagnitudeCriterion(), target="inputs", keep=3)


def test_pruner_validate_rejects_keep_beyond_inputs(tiny_mlp: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"pruner\.keep must be <= 16"):
        Pruner(RandomCriterion(), target="inputs", keep=17).validate(tiny_mlp)
    Pruner(RandomCriterion(), target="inputs", keep=16).validate(tiny_mlp)


def test_pruner_validate_rejects_keep_below_min_width(tiny_mlp: nn.Module) -> None:
    with pytest.raises(ValueError, match="min_width=4"):
        Pruner(RandomCriterion(), keep=5, min_width=4).validate(tiny_mlp)


def test_pruner_needs_and_record_names(tiny_resnet: nn.Module) -> None:
    pruner = Pruner(LRPCriterion())
    assert pruner.needs == frozenset({"stats"})
    names = pruner.record_names(tiny_resnet)
    assert names[:2] == ["conv1", "layers.0.0.conv2"]
    assert "fc" not in names
    assert Pruner(LRPCriterion(), target="inputs", keep=4).record_names(tiny_resnet) == []
    with pytest.raises(ValueError, match="needs stats"):
        pruner.plan(tiny_resnet)
    assert Pruner(MagnitudeCriterion()).record_names(tiny_resnet) == []


def test_pruner_global_plan_keeps_ratio_and_min_width(tiny_lenet: nn.Module) -> None:
    with torch.no_grad():
        tiny_lenet.features[0].weight.mul_(100)  # global ranking would empty the other layers
    pruner = Pruner(MagnitudeCriterion(normalize=False), ratio=0.5, min_width=2)
    plan = pruner.plan(tiny_lenet)
    kept = {name: len(v) for name, v in plan.keep.items()}
    assert sum(kept.values()) == round((4 + 6 + 8) * 0.5)
    assert kept["features.0"] == 4
    assert min(kept.values()) == 2
    apply_plan(tiny_lenet, plan)
    assert tiny_lenet.features[3].weight.shape[0] == kept["features.3"]


def test_pruner_per_layer_plan_removes_same_fraction(tiny_lenet: nn.Module) -> None:
    with torch.no_grad():
        tiny_lenet.features[0].weight.mul_(100)
    pruner = Pruner(MagnitudeCriterion(normalize=False), ratio=0.5, global_ranking=False)
    kept = {name: len(v) for name, v in pruner.plan(tiny_lenet).keep.items()}
    assert kept == {"features.0": 2, "features.3": 3, "classifier.0": 4}


def test_pruner_keeps_coupled_producers_together(tiny_resnet: nn.Module) -> None:
    plan = Pruner(RandomCriterion(seed=3), ratio=0.5).plan(tiny_resnet)
    assert plan.keep["conv1"] == plan.keep["layers.0.0.conv2"]
    assert plan.keep["layers.1.0.conv2"] == plan.keep["layers.1.0.shortcut.0"]


def test_pruner_total_counts_coupled_producers_once(tiny_resnet: nn.Module) -> None:
    pruner = Pruner(RandomCriterion(seed=3), keep=12, rounds=1)
    groups = find_groups(tiny_resnet, torch.zeros(1, *tiny_resnet.in_shape))
    total = pruner.total(tiny_resnet)
    assert total == sum(g.width for g in groups)
    plan = pruner.plan(tiny_resnet)
    removed = sum(g.width - len(plan.keep[g.producers[0]]) for g in groups)
    # the logged ratio is what the plan removed (summing every producer would count the
    # residual sum's channels twice and overstate it)
    assert pruner.ratio_at(1, total) == pytest.approx(removed / total)
    assert total < sum(plan.dense_widths.values())


def test_pruner_lrp_plan_keeps_relevant_units(tiny_mlp: nn.Module) -> None:
    channels = {"layers.0": torch.ones(8), "layers.2": torch.ones(6)}
    channels["layers.0"][[2, 6]] = 10.0
    stats = RelevanceStats(num_classes=3, channels=channels)
    plan = Pruner(LRPCriterion(), keep=4, global_ranking=True).plan(tiny_mlp, stats=stats)
    assert plan.keep["layers.0"] == [2, 6]  # normalised 10/26 beats 1/6


def test_pruner_input_plan_keeps_k_varying_pixels(tiny_mlp: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(20, 1, 4, 4, dtype=torch.float64)
    x.view(20, 16)[:, [1, 4, 9]] = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    pruner = Pruner(VarianceCriterion(), target="inputs", keep=3)
    plan = pruner.plan(tiny_mlp, batches=[(x, None)])
    assert plan.input_keep == [1, 4, 9]
    assert plan.input_shape == (1, 4, 4)


@pytest.mark.parametrize("schedule", ["constant", "geometric"])
def test_pruner_iterative_rounds_compose_to_final_amount(
    tiny_mlp: nn.Module, schedule: str
) -> None:
    pruner = Pruner(RandomCriterion(), target="inputs", keep=4, rounds=2, schedule=schedule)
    first = pruner.plan(tiny_mlp, round_index=1)
    apply_plan(tiny_mlp, first)
    second = pruner.plan(tiny_mlp, round_index=2)  # current plan read from the model
    assert len(first.input_keep) == round(16 * (1 - pruner.ratio_at(1, 16)))
    assert len(second.input_keep) == 4
    assert set(second.input_keep) <= set(first.input_keep)
    apply_plan(tiny_mlp, second)
    assert tiny_mlp.layers[0].weight.shape == (8, 4)


def test_pruner_iterative_unit_rounds_are_relative_to_dense(tiny_vgg: nn.Module) -> None:
    pruner = Pruner(MagnitudeCriterion(), ratio=0.5, rounds=2)
    dense = {g.name: g.width for g in find_groups(tiny_vgg, None)}
    first = pruner.plan(tiny_vgg, round_index=1)
    apply_plan(tiny_vgg, first)
    second = pruner.plan(tiny_vgg, round_index=2, current_plan=first)
    assert sum(len(v) for v in second.keep.values()) == round(sum(dense.values()) * 0.5)
    assert second.dense_widths == dense
    for name, kept in second.keep.items():
        assert set(kept) <= set(first.keep[name])


def test_pruner_ratio_at_needs_total_with_keep() -> None:
    pruner = Pruner(RandomCriterion(), keep=10, rounds=2)
    assert pruner.ratio_at(2, total=40) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="total"):
        pruner.ratio_at(1)
    with pytest.raises(ValueError, match="round_index"):
        Pruner(RandomCriterion()).plan(nn.Linear(2, 2), torch.zeros(1, 2), round_index=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_pruner_plans_and_cuts_on_gpu(tiny_lenet: nn.Module) -> None:
    model = tiny_lenet.float().cuda()
    plan = Pruner(MagnitudeCriterion(), ratio=0.5).plan(model)
    apply_plan(model, plan)
    n = 20 * 20
    inputs = Pruner(RandomCriterion(), target="inputs", keep=n // 2).plan(model)
    apply_plan(model, inputs)
    assert model(torch.zeros(2, 1, 20, 20, device="cuda")).shape == (2, 3)
    assert all(t.is_cuda for t in model.state_dict().values())
