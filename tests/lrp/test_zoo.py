"""The model zoo: torchvision and timm classifiers under every preset, against Zennit (float64).

Random weights, one tiny image each (3x32x32; ResNet-50 and VGG-16 are down to 1x1 by their last
stage), CPU. VGG-16's classifier is narrowed to 32 units (the stock one has 120 M weights): its
convolutional part, pools and the 7x7 adaptive pool in front of the classifier are torchvision's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import timm
import torch
import torchvision
from timm.layers import BatchNormAct2d
from torch import Tensor, nn
from torchvision.models.mobilenetv2 import InvertedResidual, MobileNetV2
from zennit.canonizers import AttributeCanonizer, CompositeCanonizer, SequentialMergeBatchNorm
from zennit.layer import Sum
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from prune.lrp import COMPOSITES, Explainer, attribute, get_composite

from .conftest import zero_biases
from .test_zennit_oracle import BN_EPS, ZENNIT, _assert_close, _zennit

CLASSES = 4
SHAPE = (3, 32, 32)


def vgg16_bn(num_classes: int = CLASSES) -> nn.Module:
    """torchvision's vgg16_bn with a 32-unit classifier (three Linear layers, as the stock one)."""
    with torch.device("meta"):  # the stock classifier is never allocated
        model = torchvision.models.vgg16_bn(num_classes=num_classes)
    model.features.to_empty(device="cpu")
    for module in model.features.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 32),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(32, 32),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(32, num_classes),
    )
    return model


#: The zoo: name -> builder of a float32 model with random weights and ``CLASSES`` outputs
#: (``mobilenet_v2_035`` only serves the Zennit oracle below).
ZOO: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=CLASSES),
    "resnet50": lambda: torchvision.models.resnet50(num_classes=CLASSES),
    "vgg16_bn": vgg16_bn,
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=CLASSES),
    "mobilenet_v2_035": lambda: torchvision.models.mobilenet_v2(
        num_classes=CLASSES, width_mult=0.35
    ),
    "timm_resnet10t": lambda: timm.create_model("resnet10t", num_classes=CLASSES),
    "timm_mobilenetv2_035": lambda: timm.create_model("mobilenetv2_035", num_classes=CLASSES),
}
#: Modules of each model whose outputs carry all relevance (stages between residual blocks).
CUTS = {
    "resnet18": ["layer1", "layer2", "layer3", "layer4", "fc"],
    "resnet50": ["layer1", "layer4", "fc"],
    "vgg16_bn": ["features.5", "features", "classifier.0"],
    "mobilenet_v2": ["features.1", "features.10", "features", "classifier.1"],
    "timm_resnet10t": ["layer1", "layer4", "fc"],
    "timm_mobilenetv2_035": ["blocks.1", "blocks", "classifier"],
}
_BUILT: dict[tuple[str, int], nn.Module] = {}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


def _randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics (a fresh model has mean 0, var 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c, dtype = m.num_features, m.weight.dtype
                m.running_mean.copy_(torch.randn(c, generator=gen, dtype=dtype) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen, dtype=dtype) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen, dtype=dtype) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen, dtype=dtype) * 0.1)


def zoo_model(name: str, seed: int = 0) -> nn.Module:
    """A zoo model in float64 and eval mode, built once per name and seed (never modify it)."""
    if (name, seed) not in _BUILT:
        torch.manual_seed(seed)
        model = ZOO[name]().double().eval()
        _randomize_batchnorm(model, seed)
        _BUILT[(name, seed)] = model
    return _BUILT[(name, seed)]


def _input(seed: int = 0, batch: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(batch, *SHAPE, generator=gen, dtype=torch.float64)


def _relative(ours: Tensor, theirs: Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-300)).item()


# -- every preset explains every model ----------------------------------------------------------
#: the zoo's models for the tests below
MODELS = sorted(set(ZOO) - {"mobilenet_v2_035"})


@pytest.mark.parametrize("preset", sorted(COMPOSITES))
@pytest.mark.parametrize("name", MODELS)
def test_every_preset_explains_the_zoo(name: str, preset: str) -> None:
    model, x = zoo_model(name), _input()
    result = attribute(model, x, torch.tensor([1]), preset)
    # the pass computes the model's own logits (no layer skipped or changed)
    torch.testing.assert_close(result.logits, model(x), rtol=1e-12, atol=1e-12)
    assert result.input.shape == x.shape and torch.isfinite(result.input).all()
    assert result.input.abs().sum() > 0


# -- conservation ----------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["epsilon", "epsilon_gamma_box", "attnlrp"])
@pytest.mark.parametrize("name", MODELS)
def test_relevance_is_conserved_through_the_zoo_without_biases(name: str, preset: str) -> None:
    # z+ and alpha-beta are left out: z+ absorbs residual units with z <= 0, and alpha-beta
    # creates relevance at the linear bottlenecks of MobileNets (outputs of both signs)
    model = zero_biases(copy.deepcopy(zoo_model(name)))
    # stabilisers far below the logits (those of a bias-free MobileNet are about 1e-11)
    kwargs = {"epsilon": 1e-30, "stabilizer": 1e-30}
    if preset == "epsilon_gamma_box":
        kwargs.update(low=-5.0, high=5.0)
    result = attribute(
        model, _input(batch=2), torch.tensor([1, 2]), get_composite(preset, **kwargs), CUTS[name]
    )
    for where, total in result.sums().items():
        # float64: only rounding remains
        torch.testing.assert_close(total, result.explained, rtol=1e-9, atol=0, msg=where)


# -- Zennit oracle -----------------------------------------------------------------------------
def _mobilenet_v2_canonizer() -> CompositeCanonizer:
    """Zennit's view of torchvision's MobileNetV2: the residual sum as a ``Sum`` module and the
    functional average pool as a module (so that both get the z-rule, as ours do)."""

    def block_forward(self: InvertedResidual, x: Tensor) -> Tensor:
        if not self.use_res_connect:
            return self.conv(x)
        return self.canonizer_sum(torch.stack([x, self.conv(x)], dim=-1))

    def net_forward(self: MobileNetV2, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.canonizer_pool(self.features(x)), 1))

    def attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, InvertedResidual):
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, MobileNetV2):
            pool = nn.AdaptiveAvgPool2d(1)
            return {"forward": net_forward.__get__(module), "canonizer_pool": pool}
        return None

    return CompositeCanonizer([SequentialMergeBatchNorm(), AttributeCanonizer(attributes)])


def _timm_resnet_canonizer() -> CompositeCanonizer:
    """Zennit's view of timm's ResNet blocks: ``x += shortcut`` as a ``Sum`` module."""
    from timm.models.resnet import BasicBlock

    def block_forward(self: BasicBlock, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act2(self.canonizer_sum(torch.stack([shortcut, out], dim=-1)))

    def attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, BasicBlock):
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        return None

    return CompositeCanonizer([SequentialMergeBatchNorm(), AttributeCanonizer(attributes)])


#: Zennit's canonizers for the zoo models it can explain (its own where it has one)
ZENNIT_CANONIZERS: dict[str, Callable[[], list]] = {
    "resnet50": lambda: [ResNetCanonizer()],
    "vgg16_bn": lambda: [VGGCanonizer()],
    "mobilenet_v2": lambda: [_mobilenet_v2_canonizer()],
    "timm_resnet10t": lambda: [_timm_resnet_canonizer()],
    "grouped": lambda: [SequentialMergeBatchNorm()],
}


_PAIRS: dict[str, tuple[nn.Module, nn.Module]] = {}


def _oracle_pair(name: str, model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Two copies with a BatchNorm eps that Zennit's merge leaves exact: ours with the model's
    in-place activations, Zennit's with activations out of place (built once per name)."""
    if name not in _PAIRS:
        ours = copy.deepcopy(model)
        for m in ours.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = BN_EPS
        theirs = copy.deepcopy(ours)
        for m in theirs.modules():
            if getattr(m, "inplace", False):
                m.inplace = False
        _PAIRS[name] = ours, theirs
    return _PAIRS[name]


def _compare_with_zennit(
    name: str, model: nn.Module, preset: str, backends=("fast",), record=(), batch: int = 2
) -> None:
    ours_model, theirs = _oracle_pair(name, model)
    x, target = _input(batch=batch), torch.tensor([1, 3][:batch])
    canonizers = ZENNIT_CANONIZERS[name]()
    for backend in backends:
        ours = attribute(ours_model, x, target, preset, record=record, backend=backend)
        out_rel = torch.zeros_like(ours.logits)
        out_rel[range(batch), target] = ours.logits[range(batch), target]
        rel, layers = _zennit(theirs, x, out_rel, ZENNIT[preset](canonizers), list(record))
        _assert_close(ours.input, rel, f"{name} {preset} ({backend}) input")
        for layer in record:
            _assert_close(ours.output[layer], layers[layer], f"{name} {preset} ({backend}) {layer}")


@pytest.mark.parametrize("preset", ["epsilon", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
@pytest.mark.parametrize("name", ["resnet50", "vgg16_bn", "timm_resnet10t"])
def test_zoo_matches_zennit(name: str, preset: str) -> None:
    _compare_with_zennit(name, zoo_model(name), preset, record=CUTS[name][:1])


@pytest.mark.parametrize("preset", sorted(ZENNIT))
def test_depthwise_convolutions_match_zennit_on_both_backends(preset: str) -> None:
    # torchvision's MobileNetV2 (width 0.35 for speed): depthwise 3x3 convs (groups =
    # channels), in-place ReLU6, residual sums, the functional average pool
    record = ["features.2.conv.1.0", "features.10"]  # a depthwise conv; a residual block
    model = zoo_model("mobilenet_v2_035")
    _compare_with_zennit("mobilenet_v2", model, preset, ("fast", "reference"), record)


def _grouped_net() -> nn.Module:
    """Grouped (not depthwise) convolutions with BatchNorm: groups 2 and 4."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, groups=2),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 8, 3, stride=2, groups=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, CLASSES),
    )
    model = model.double().eval()
    _randomize_batchnorm(model, 3)
    return model


@pytest.mark.parametrize("preset", sorted(ZENNIT))
def test_grouped_convolutions_match_zennit_on_both_backends(preset: str) -> None:
    model = _grouped_net()
    _compare_with_zennit("grouped", model, preset, ("fast", "reference"), ["3"])


# -- fast backend and traced program against the reference forms ------------------------------
#: presets that the Zennit tests do not already run on both backends, per model
REFERENCE_CASES = [
    *(("mobilenet_v2", p) for p in sorted(set(COMPOSITES.names()) - set(ZENNIT))),
    *(("timm_mobilenetv2_035", p) for p in sorted(COMPOSITES)),
    *(("timm_resnet10t", p) for p in sorted(COMPOSITES)),
]


@pytest.mark.parametrize(("name", "preset"), REFERENCE_CASES)
def test_zoo_kernels_equal_reference(name: str, preset: str) -> None:
    model, x = zoo_model(name), _input()
    fast = attribute(model, x, torch.tensor([2]), preset)
    ref = attribute(model, x, torch.tensor([2]), preset, backend="reference")
    # absLRP divides by |z| without a stabiliser and rescales every layer to unit L1: rounding
    # grows to about 1e-8 through MobileNet's 17 blocks; the other presets agree to 1e-12
    tolerance = 1e-6 if preset == "abslrp" else 1e-12
    assert _relative(fast.input, ref.input) <= tolerance


@pytest.mark.parametrize("name", MODELS)
def test_zoo_explainer_equals_attribute(name: str) -> None:
    model, x = zoo_model(name), _input(batch=2)
    explainer = Explainer(model, "epsilon_plus")  # traced on the first call
    target = torch.tensor([0, 3])
    expected = attribute(model, x, target, "epsilon_plus").input
    for _ in range(2):
        torch.testing.assert_close(explainer(x, target).input, expected, rtol=1e-12, atol=0)
        assert explainer.engine._program is not None, f"{name} was not traced"


# -- timm's BatchNorm with an activation inside -------------------------------------------------
def _split_norm_act(model: nn.Module) -> nn.Module:
    """The same network with every ``BatchNormAct2d`` as ``Sequential(BatchNorm2d, act)``."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, BatchNormAct2d):
            norm = nn.BatchNorm2d(module.num_features, eps=module.eps).double().eval()
            norm.load_state_dict(module.state_dict(), strict=False)
            parent = twin.get_submodule(name.rpartition(".")[0]) if "." in name else twin
            setattr(parent, name.rpartition(".")[2], nn.Sequential(norm, module.drop, module.act))
    return twin


@pytest.mark.parametrize("preset", sorted(COMPOSITES))
def test_timm_norm_act_is_explained_as_batchnorm_then_activation(preset: str) -> None:
    model = zoo_model("timm_mobilenetv2_035")
    split = _split_norm_act(model)
    assert not any(isinstance(m, BatchNormAct2d) for m in split.modules())
    x, target = _input(batch=2), torch.tensor([0, 2])
    torch.testing.assert_close(split(x), model(x), rtol=1e-12, atol=1e-12)
    ours, plain = attribute(model, x, target, preset), attribute(split, x, target, preset)
    assert _relative(ours.input, plain.input) <= 1e-12


# -- in-place activations ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("preset", ["epsilon", "epsilon_plus", "epsilon_alpha2_beta1"])
def test_inplace_relu6_is_explained_as_out_of_place(preset: str, backend: str) -> None:
    # MobileNet's ReLU6(inplace=True): where it clips (inputs above 6), the pass rule still
    # hands on all relevance, so the activation must not overwrite the input the rule keeps
    torch.manual_seed(5)

    def net(inplace: bool) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 6, 3), nn.ReLU6(inplace), nn.Flatten(), nn.Linear(6 * 4 * 4, CLASSES)
        )

    inplace, plain = net(True).double().eval(), net(False).double().eval()
    plain.load_state_dict(inplace.state_dict())
    x = 10 * _input(batch=2)[:, :, :6, :6]
    assert (plain[0](x) > 6).float().mean() > 0.1  # it does clip
    ours = attribute(inplace, x, torch.tensor([0, 1]), preset, backend=backend)
    expected = attribute(plain, x, torch.tensor([0, 1]), preset, backend=backend)
    assert _relative(ours.input, expected.input) <= 1e-12
