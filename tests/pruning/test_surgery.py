from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from prune.pruning.groups import find_groups
from prune.pruning.input_front import InputCrop, InputSelect
from prune.pruning.plan import PruningPlan
from prune.pruning.surgery import applied_plan, apply_plan

# float64 models: removing dead units changes only the summation order.
TOL = {"atol": 1e-10, "rtol": 1e-10}


def _zero_inputs(module: nn.Module, channels: list[int], per_channel: int = 1) -> None:
    """Make ``channels`` dead for ``module`` by zeroing its incoming weights for them."""
    with torch.no_grad():
        w = module.weight
        if isinstance(module, nn.Linear) and per_channel > 1:
            w.view(w.shape[0], -1, per_channel)[:, channels] = 0  # (out, C * H * W) -> (out, C, HW)
        else:
            w[:, channels] = 0


def _unit_plan(model: nn.Module, group: str, removed: list[int]) -> PruningPlan:
    groups = {g.name: g for g in find_groups(model, None)}
    g = groups[group]
    kept = [i for i in range(g.width) if i not in removed]
    return PruningPlan(
        keep={p: kept for p in g.producers}, dense_widths={p: g.width for p in g.producers}
    )


# (model, group, consumers with units-per-channel): hand-written, not read from the graph.
TOPOLOGIES = {
    "linear->linear": ("mlp", "layers.0", [("layers.2", 1)]),
    "conv->BN->conv": ("vgg", "features.0", [("features.4", 1)]),
    "conv->conv": ("lenet", "features.0", [("features.3", 1)]),
    "conv->flatten->linear": ("lenet", "features.3", [("classifier.0", 4)]),
    "residual add (stem + block)": (
        "resnet",
        "conv1",
        [("layers.0.0.conv1", 1), ("layers.1.0.conv1", 1), ("layers.1.0.shortcut.0", 1)],
    ),
    "residual add (block + shortcut)": ("resnet", "layers.1.0.conv2", [("fc", 1)]),
}


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_apply_plan_keeps_outputs_when_removed_channels_are_dead(
    topology: str, build_model, make_input
) -> None:
    kind, group, consumers = TOPOLOGIES[topology]
    dense = build_model(kind)
    removed = [0, 2]
    for name, per_channel in consumers:
        _zero_inputs(dense.get_submodule(name), removed, per_channel)
    x = make_input(dense)
    expected = dense(x)
    pruned = apply_plan(copy.deepcopy(dense), _unit_plan(dense, group, removed))
    for p in _unit_plan(dense, group, removed).keep:
        assert pruned.get_submodule(p).weight.shape[0] == dense.get_submodule(p).weight.shape[0] - 2
    torch.testing.assert_close(pruned(x), expected, **TOL)


def test_apply_plan_changes_outputs_when_removed_channels_are_alive(
    tiny_vgg: nn.Module, make_input
) -> None:
    x = make_input(tiny_vgg)
    pruned = apply_plan(copy.deepcopy(tiny_vgg), _unit_plan(tiny_vgg, "features.0", [0, 2]))
    assert not torch.allclose(pruned(x), tiny_vgg(x))


def test_apply_plan_shapes_follow_through_flatten(tiny_lenet: nn.Module, make_input) -> None:
    plan = PruningPlan(keep={"features.0": [1, 3], "features.3": [0, 4, 5], "classifier.0": [7]})
    apply_plan(tiny_lenet, plan)
    f, c = tiny_lenet.features, tiny_lenet.classifier
    assert f[0].weight.shape == (2, 1, 5, 5)
    assert f[3].weight.shape == (3, 2, 5, 5)
    assert c[0].weight.shape == (1, 3 * 2 * 2)  # 3 channels on a 2 x 2 grid
    assert c[2].weight.shape == (3, 1)
    assert tiny_lenet(make_input(tiny_lenet)).shape == (4, 3)


def test_apply_plan_keeps_names_and_mode(tiny_resnet: nn.Module) -> None:
    names = [n for n, _ in tiny_resnet.named_modules()]
    tiny_resnet.train()
    bn = tiny_resnet.bn1.running_mean.clone()
    apply_plan(tiny_resnet, _unit_plan(tiny_resnet, "layers.0.0.conv1", [1]))
    assert [n for n, _ in tiny_resnet.named_modules()] == names
    assert tiny_resnet.training
    torch.testing.assert_close(tiny_resnet.bn1.running_mean, bn)  # tracing must not update BN


def test_apply_plan_input_select_keeps_outputs_when_dropped_inputs_are_zero(
    tiny_mlp: nn.Module, make_input
) -> None:
    keep = [0, 3, 5, 6, 10, 15]
    x = make_input(tiny_mlp)
    mask = torch.zeros(16, dtype=torch.float64)
    mask[keep] = 1
    expected = tiny_mlp(x * mask.view(1, 1, 4, 4))
    apply_plan(tiny_mlp, PruningPlan(input_keep=keep, input_shape=(1, 4, 4)))
    assert isinstance(tiny_mlp.input_front, InputSelect)
    assert tiny_mlp.layers[0].weight.shape == (8, len(keep))
    torch.testing.assert_close(tiny_mlp(x), expected, **TOL)


def _box_keep(rows: range, cols: range, width: int = 20) -> list[int]:
    return [r * width + c for r in rows for c in cols]


def test_apply_plan_crop_keeps_outputs_when_outside_features_are_dead(
    tiny_lenet: nn.Module, make_input
) -> None:
    # Kept pixels: rows 4..19, cols 0..19 (aligned to the stride 4 of the two poolings).
    # LeNet's valid convolutions then compute exactly the dense features of rows 1..1 and cols
    # 0..1 of the 2 x 2 grid; the dense head's columns for row 0 are made dead, so the dense
    # model and the cropped one must agree on every input.
    dense = tiny_lenet
    with torch.no_grad():
        dense.classifier[0].weight.view(8, 6, 2, 2)[:, :, 0, :] = 0
    x = make_input(dense)
    expected = dense(x)
    cropped = apply_plan(
        copy.deepcopy(dense),
        PruningPlan(input_keep=_box_keep(range(4, 20), range(20)), input_shape=(1, 20, 20)),
    )
    front = cropped.input_front
    assert isinstance(front, InputCrop)
    assert (front.top, front.bottom, front.left, front.right) == (4, 20, 0, 20)
    assert cropped.classifier[0].weight.shape == (8, 6 * 1 * 2)
    torch.testing.assert_close(cropped(x), expected, **TOL)


def test_apply_plan_crop_ignores_pixels_outside_the_kept_set(
    tiny_lenet: nn.Module, make_input
) -> None:
    keep = [i for i in _box_keep(range(5, 17), range(3, 18)) if i % 3]  # ragged inside its box
    cropped = apply_plan(tiny_lenet, PruningPlan(input_keep=keep, input_shape=(1, 20, 20)))
    x = make_input(cropped)
    noise = make_input(cropped, seed=1).flatten(1)
    noise[:, keep] = 0
    torch.testing.assert_close(cropped(x + noise.view_as(x)), cropped(x), **TOL)


def test_apply_plan_crop_runs_convolutions_on_the_smaller_image(
    tiny_resnet: nn.Module, make_input
) -> None:
    seen = []
    tiny_resnet.conv1.register_forward_pre_hook(lambda _m, a: seen.append(a[0].shape))
    keep = _box_keep(range(2, 6), range(1, 7), width=8)
    apply_plan(tiny_resnet, PruningPlan(input_keep=keep, input_shape=(1, 8, 8)))
    assert tiny_resnet(make_input(tiny_resnet)).shape == (4, 3)
    assert seen[-1] == (4, 1, 4, 6)  # pooled head: no alignment needed


def test_apply_plan_crop_rejects_unsupported_model() -> None:
    class NormFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_shape = (1, 8, 8)
            self.norm = nn.BatchNorm2d(1)
            self.fc = nn.Linear(64, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.norm(x).flatten(1))

    with pytest.raises(ValueError, match="NormFirst"):
        apply_plan(NormFirst(), PruningPlan(input_keep=[1, 2], input_shape=(1, 8, 8)))


@pytest.mark.parametrize("kind", ["mlp", "lenet", "resnet"])
def test_apply_plan_replays_on_fresh_dense_model(kind: str, build_model, make_input) -> None:
    model = build_model(kind)
    groups = find_groups(model, None)
    keep = {p: list(range(0, g.width, 2)) for g in groups for p in g.producers}
    n = model.in_shape[1] * model.in_shape[2]
    plan = PruningPlan(keep, input_keep=list(range(n // 4, n)), input_shape=model.in_shape)
    apply_plan(model, plan)
    state = model.state_dict()
    stored = PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict())))

    fresh = build_model(kind, seed=7)
    apply_plan(fresh, stored)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {
        k: v.shape for k, v in state.items()
    }
    fresh.load_state_dict(state)
    x = make_input(model)
    torch.testing.assert_close(fresh(x), model(x), **TOL)


@pytest.mark.parametrize("kind", ["mlp", "lenet"])
def test_apply_plan_iterative_equals_one_shot(kind: str, build_model, make_input) -> None:
    dense = build_model(kind)
    groups = find_groups(dense, None)
    n = dense.in_shape[1] * dense.in_shape[2]
    first = PruningPlan(
        {p: list(range(1, g.width)) for g in groups for p in g.producers},
        input_keep=list(range(n // 5, n)),
        input_shape=dense.in_shape,
    )
    later = PruningPlan(
        {p: list(range(0, g.width - 1, 2)) for g in groups for p in g.producers},
        input_keep=list(range(n // 5, n - n // 5)),
        input_shape=dense.in_shape,
    )
    total = first.compose(later)
    stepwise = apply_plan(apply_plan(copy.deepcopy(dense), first), total)
    one_shot = apply_plan(copy.deepcopy(dense), total)
    assert applied_plan(stepwise) == total
    assert {k: v.shape for k, v in stepwise.state_dict().items()} == {
        k: v.shape for k, v in one_shot.state_dict().items()
    }
    x = make_input(dense)
    torch.testing.assert_close(stepwise(x), one_shot(x), **TOL)


def test_apply_plan_rejects_unknown_producer(tiny_mlp: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"layers\.4"):
        apply_plan(tiny_mlp, PruningPlan(keep={"layers.4": [0]}))


def test_apply_plan_rejects_split_coupled_group(tiny_resnet: nn.Module) -> None:
    with pytest.raises(ValueError, match="coupled"):
        apply_plan(tiny_resnet, PruningPlan(keep={"conv1": [0, 1], "layers.0.0.conv2": [0, 2]}))


def test_apply_plan_rejects_regrowth(tiny_mlp: nn.Module) -> None:
    apply_plan(tiny_mlp, PruningPlan(keep={"layers.0": [0, 1]}))
    with pytest.raises(ValueError, match="regrow"):
        apply_plan(tiny_mlp, PruningPlan(keep={"layers.0": [0, 5]}))


def test_apply_plan_crop_grows_box_until_the_network_accepts_it(tiny_lenet: nn.Module) -> None:
    keep = [9 * 20 + 9, 10 * 20 + 10]  # two pixels; LeNet needs at least 16 x 16
    apply_plan(tiny_lenet, PruningPlan(input_keep=keep, input_shape=(1, 20, 20)))
    front = tiny_lenet.input_front
    assert front.bottom - front.top >= 16
    assert front.right - front.left >= 16
    assert front.top % 4 == 0
    assert front.left % 4 == 0
    assert int(front.mask.sum()) == 2
    assert tiny_lenet(torch.zeros(2, 1, 20, 20, dtype=torch.float64)).shape == (2, 3)
