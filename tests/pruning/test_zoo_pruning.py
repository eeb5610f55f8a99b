"""Channel pruning of torchvision and timm classifiers through Torch-Pruning's dependency graph.

Random weights, tiny inputs (3x32x32), CPU, float32; the models are those of the LRP zoo test
(``tests/lrp/test_zoo.py``: VGG-16 with a 32-unit classifier).
"""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch
import torchvision
from torch import Tensor, nn

from prune.evaluation.cost import count_flops, count_params
from prune.lrp import attribute
from prune.lrp.stats import RelevanceStats
from prune.models import TimmNet, TorchvisionNet
from prune.module import ClassifierModule
from prune.pruning import Pruner, PruningPlan, apply_plan, find_groups
from prune.pruning.criteria import LRPCriterion, MagnitudeCriterion
from prune.pruning.groups import UnprunableModelError
from tests.lrp.test_zoo import CLASSES, SHAPE, ZOO, zoo_model

MODELS = [
    "resnet18",
    "resnet50",
    "vgg16_bn",
    "mobilenet_v2",
    "timm_resnet10t",
    "timm_mobilenetv2_035",
]
# removing dead channels changes only the summation order (float32: CPU convolutions in float64
# with parameters that need gradients, as the dependency graph traces them, are 100x slower)
TOL = {"atol": 1e-5, "rtol": 1e-4}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


def _input(batch: int = 2, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *SHAPE, generator=gen)


def _model(name: str) -> nn.Module:
    """A float32 copy of a zoo model (the zoo's instances are shared: never cut those)."""
    return copy.deepcopy(zoo_model(name)).float()


# -- coupling ---------------------------------------------------------------------------------
#: Hand-written couplings (from the architectures, not from the graph): a group named by its
#: first producer and every producer cut with it.
COUPLED = {
    "resnet18": {
        "conv1": ("conv1", "layer1.0.conv2", "layer1.1.conv2"),
        "layer2.0.conv2": ("layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"),
        "layer1.0.conv1": ("layer1.0.conv1",),
    },
    "resnet50": {
        "layer1.0.conv3": (
            "layer1.0.conv3",
            "layer1.0.downsample.0",
            "layer1.1.conv3",
            "layer1.2.conv3",
        ),
        "layer3.2.conv2": ("layer3.2.conv2",),
    },
    "vgg16_bn": {"features.0": ("features.0",), "classifier.3": ("classifier.3",)},
    "mobilenet_v2": {  # the expansion conv and the depthwise conv it feeds; a residual stage
        "features.2.conv.0.0": ("features.2.conv.0.0", "features.2.conv.1.0"),
        "features.2.conv.2": ("features.2.conv.2", "features.3.conv.2"),
    },
    "timm_resnet10t": {"layer1.0.conv1": ("layer1.0.conv1",)},
    "timm_mobilenetv2_035": {
        "blocks.1.0.conv_pw": ("blocks.1.0.conv_pw", "blocks.1.0.conv_dw"),
        "blocks.1.0.conv_pwl": ("blocks.1.0.conv_pwl", "blocks.1.1.conv_pwl"),
    },
}


@pytest.mark.parametrize("name", MODELS)
def test_residual_and_depthwise_channels_are_coupled(name: str) -> None:
    model = _model(name)
    groups = {g.name: g for g in find_groups(model, _input(1))}
    for first, producers in COUPLED[name].items():
        assert groups[first].producers == producers
    every = [p for g in groups.values() for p in g.producers]
    assert len(every) == len(set(every))  # each producer in one group
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    assert last not in every  # the classifier keeps its classes


# -- surgery -----------------------------------------------------------------------------------
def _norms_after(model: nn.Module, x: Tensor) -> dict[str, nn.Module]:
    """``{producer: the BatchNorm that reads its output}``, found in a forward pass."""
    produced: dict[int, str] = {}
    found: dict[str, nn.Module] = {}

    def output_of(name: str):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            produced[id(out)] = name

        return hook

    def norm_reads(module: nn.Module, args: tuple) -> None:
        found.setdefault(produced.get(id(args[0]), ""), module)

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(output_of(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(norm_reads))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return found


def _kill(model: nn.Module, producers: tuple[str, ...], removed: list[int], x: Tensor) -> None:
    """Make channels ``removed`` of ``producers`` output zero: their weight rows and biases,
    and the scale and shift of the BatchNorm after each, set to 0 (activations keep 0 at 0)."""
    norms = _norms_after(model, x)
    with torch.no_grad():
        for name in producers:
            for module in (model.get_submodule(name), norms.get(name)):
                if module is None:
                    continue
                module.weight[removed] = 0
                if module.bias is not None:
                    module.bias[removed] = 0


@pytest.mark.parametrize("name", MODELS)
def test_surgery_keeps_outputs_when_removed_channels_are_dead(name: str) -> None:
    model, x = _model(name), _input()
    groups = find_groups(model, x[:1])
    keep: dict[str, list[int]] = {}
    for group in groups:  # two channels of every group
        removed = [0, group.width // 2]
        _kill(model, group.producers, removed, x[:1])
        keep.update(
            {p: [i for i in range(group.width) if i not in removed] for p in group.producers}
        )
    expected = model(x)
    flops, params = count_flops(model, SHAPE), count_params(model)
    pruned = apply_plan(copy.deepcopy(model), PruningPlan(keep=keep), x[:1])
    for group in groups:
        for p in group.producers:
            assert pruned.get_submodule(p).weight.shape[0] == group.width - 2
    torch.testing.assert_close(pruned(x), expected, **TOL)
    assert count_flops(pruned, SHAPE) < flops and count_params(pruned) < params


def test_surgery_changes_outputs_when_removed_channels_are_alive() -> None:
    model, x = _model("resnet18"), _input()
    plan = PruningPlan(keep={p: [1, 2, 3] for p in COUPLED["resnet18"]["conv1"]})
    assert not torch.allclose(apply_plan(copy.deepcopy(model), plan, x[:1])(x), model(x))


# -- the project's criteria --------------------------------------------------------------------
def _lrp_stats(model: nn.Module, pruner: Pruner, x: Tensor) -> RelevanceStats:
    target = torch.arange(len(x)) % CLASSES
    result = attribute(model, x, target, "epsilon_plus", record=pruner.record_names(model, x[:1]))
    stats = RelevanceStats(num_classes=CLASSES)
    stats.update(result.input, result.output, target)
    return stats


@pytest.mark.parametrize("criterion", ["lrp", "magnitude"])
@pytest.mark.parametrize("name", MODELS)
def test_criteria_plan_coupled_channels_together_and_cut_flops(name: str, criterion: str) -> None:
    model, x = _model(name), _input()
    pruner = Pruner(LRPCriterion() if criterion == "lrp" else MagnitudeCriterion(), ratio=0.1)
    stats = _lrp_stats(model, pruner, x) if criterion == "lrp" else None
    plan = pruner.plan(model, x[:1], stats=stats)
    for group in find_groups(model, x[:1]):  # one kept list per coupled group
        kept = [plan.keep[p] for p in group.producers]
        assert all(k == kept[0] for k in kept)
    dense = count_flops(model, SHAPE)
    pruned = apply_plan(copy.deepcopy(model), plan, x[:1])
    assert pruned(x).shape == (2, CLASSES)
    assert count_flops(pruned, SHAPE) < dense


# -- checkpoint and plan -----------------------------------------------------------------------
class _Net(nn.Module):
    """A zoo model with the attributes ClassifierModule needs (float32, as in training)."""

    def __init__(self, name: str, seed: int) -> None:
        super().__init__()
        self.in_shape, self.num_classes = SHAPE, CLASSES
        torch.manual_seed(seed)
        self.model = ZOO[name]()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _reloads(build, x: Tensor) -> None:
    """Prune a module, save its checkpoint (JSON plan + state dict), load it into a fresh dense
    module built with other weights, and compare outputs."""
    module = ClassifierModule(build(0)).eval()
    pruner = Pruner(MagnitudeCriterion(), ratio=0.2)
    module.apply_plan(pruner.plan(module.net, x[:1]))
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    checkpoint["pruning_plan"] = json.loads(json.dumps(checkpoint["pruning_plan"]))
    fresh = ClassifierModule(build(1)).eval()
    dense_flops = count_flops(fresh.net, fresh.in_shape)
    fresh.on_load_checkpoint(checkpoint)  # replays the plan on the dense model
    fresh.load_state_dict(checkpoint["state_dict"])  # strict: every shape must match
    torch.testing.assert_close(fresh(x), module(x), rtol=0, atol=0)
    assert count_flops(fresh.net, fresh.in_shape) < dense_flops


@pytest.mark.parametrize("name", MODELS)
def test_pruned_checkpoint_reloads_onto_a_fresh_dense_model(name: str) -> None:
    _reloads(lambda seed: _Net(name, seed), torch.randn(2, *SHAPE))


@pytest.mark.parametrize(
    "build",
    [
        lambda: TorchvisionNet((1, 28, 28), 10, name="resnet18", small_input=True),
        lambda: TimmNet((1, 28, 28), 10, name="mobilenetv2_035"),
    ],
    ids=["torchvision_resnet18_small_input", "timm_mobilenetv2_035"],
)
def test_adapted_models_reload_from_checkpoint_and_plan(build) -> None:
    def seeded(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build()

    _reloads(seeded, torch.randn(2, 1, 28, 28))


# -- models the dependency graph cannot cut ----------------------------------------------------
@pytest.mark.parametrize(
    ("build", "layer"),
    [
        # a channel shuffle: Torch-Pruning cannot map channels through its reshape
        (lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=4), "after layer 'stage"),
        # grouped (not depthwise) convolutions
        (lambda: torchvision.models.regnet_x_400mf(num_classes=4), "'trunk_output.block1"),
        # a concatenation of two producers
        (lambda: timm.create_model("ghostnet_050", num_classes=4), "'blocks."),
    ],
    ids=["shufflenet_v2", "regnet_x_400mf", "timm_ghostnet_050"],
)
def test_untraceable_models_stop_with_one_line_naming_the_layer(build, layer: str) -> None:
    model = build().eval()
    pruner = Pruner(MagnitudeCriterion(), ratio=0.2)
    with pytest.raises(UnprunableModelError) as err:
        pruner.validate(model, torch.zeros(1, 3, 64, 64))  # before any training
    message = str(err.value)
    assert "cannot be pruned by channels" in message and layer in message
    assert "\n" not in message
    assert isinstance(err.value, ValueError)  # the run reports it as a configuration error
