"""Models whose layers come from torchvision's and timm's own classes: EfficientNet-B0 (stochastic
depth) and RegNetY-200MF (timm's drop path and sigmoid gate), against Zennit (float64).

Random weights, one 3x64x64 image (64 rather than 32: the last stage keeps a 2x2 map, so the
squeeze-and-excitation gate is told from the feature map by its shape), CPU. The core knows these
classes by name (:data:`prune.lrp.types.EQUIVALENT_TYPES`), without importing either library.
"""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
from collections.abc import Callable

import pytest
import timm
import timm.layers.activations as timm_act
import timm.layers.activations_me as timm_act_me
import torch
import torchvision
from timm.layers import ConvNormAct, DropPath
from timm.layers import DropBlock2d as TimmDropBlock2d
from timm.layers.squeeze_excite import SEModule
from timm.models.regnet import Bottleneck
from torch import Tensor, nn
from torchvision.models.efficientnet import MBConv
from torchvision.ops import DropBlock2d, DropBlock3d, SqueezeExcitation, StochasticDepth
from zennit.canonizers import (
    AttributeCanonizer,
    CompositeCanonizer,
    NamedMergeBatchNorm,
    SequentialMergeBatchNorm,
)
from zennit.layer import Sum

from prune.lrp import Explainer, attribute
from prune.lrp.composites import EpsilonPlus
from prune.lrp.types import EQUIVALENT_TYPES, torch_equivalent

from .test_zennit_oracle import BN_EPS, ZENNIT, _assert_close, _zennit
from .test_zoo import _randomize_batchnorm, _split_norm_act

CLASSES = 4
SHAPE = (3, 64, 64)
#: fast and reference backends, float64: rounding only
BACKEND_RTOL = 1e-10

ZOO: dict[str, Callable[[], nn.Module]] = {
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=CLASSES),
    # a drop path rate > 0 puts timm's DropPath into every residual block
    "regnety_002": lambda: timm.create_model(
        "regnety_002", num_classes=CLASSES, drop_path_rate=0.1
    ),
}
_BUILT: dict[str, nn.Module] = {}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


def zoo_model(name: str) -> nn.Module:
    """The model in float64 and eval mode, BatchNorm eps ``BN_EPS`` (exact for Zennit's merge),
    built once (never modify it)."""
    if name not in _BUILT:
        torch.manual_seed(0)
        model = ZOO[name]().double().eval()
        _randomize_batchnorm(model, 0)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = BN_EPS
        _BUILT[name] = model
    return _BUILT[name]


def _input(batch: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(1000)
    return torch.randn(batch, *SHAPE, generator=gen, dtype=torch.float64)


def _relative(ours: Tensor, theirs: Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-300)).item()


# -- the name table -----------------------------------------------------------------------------
def test_every_equivalent_type_names_a_module_class() -> None:
    # a class that timm or torchvision moves or renames would silently stop matching
    for (module, name), twin in EQUIVALENT_TYPES.items():
        cls = getattr(importlib.import_module(module), name, None)
        assert isinstance(cls, type) and issubclass(cls, nn.Module), f"{module}.{name}"
        assert issubclass(twin, nn.Module)


def test_drop_layers_are_dropout_and_subclasses_match() -> None:
    class MyDropPath(DropPath):
        pass

    layers = [
        StochasticDepth(0.2, "row"),
        DropBlock2d(0.1, 3),
        DropPath(0.1),
        TimmDropBlock2d(0.1, 3),
        MyDropPath(0.1),
    ]
    for layer in layers:
        assert torch_equivalent(layer) is nn.Dropout, type(layer)
        x = torch.randn(2, 3, 4, 4)
        assert layer.eval()(x) is x, type(layer)  # the identity in eval mode, as dropout
    assert torch_equivalent(DropBlock3d(0.1, 3)) is nn.Dropout
    assert torch_equivalent(nn.SiLU()) is None and torch_equivalent(nn.Conv2d(1, 1, 1)) is None


#: timm's activations that compute exactly the function of their torch twin
EXACT_ACTIVATIONS = [
    timm_act.Swish,
    timm_act.Mish,
    timm_act.Sigmoid,
    timm_act.Tanh,
    timm_act.HardSwish,
    timm_act.HardSigmoid,
    timm_act.GELU,
    timm_act_me.SwishMe,
    timm_act_me.MishMe,
    timm_act_me.HardSwishMe,
    timm_act_me.HardSigmoidMe,
]


@pytest.mark.parametrize("act", EXACT_ACTIVATIONS, ids=lambda c: c.__name__)
def test_timm_activation_computes_its_torch_twin(act: type[nn.Module]) -> None:
    twin = torch_equivalent(act())
    assert twin is not None
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    torch.testing.assert_close(act()(x.clone()), twin()(x), rtol=1e-12, atol=1e-12)


def test_the_core_imports_neither_torchvision_nor_timm() -> None:
    code = (
        "import sys, prune.lrp; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'timm', 'torchvision'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- timm's activations get the rules of the torch ones -----------------------------------------
def _act_net(act: nn.Module) -> nn.Module:
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3), act, nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, CLASSES)
    )
    return net.double().eval()


@pytest.mark.parametrize("preset", ["epsilon_plus", "abslrp", "attnlrp"])
@pytest.mark.parametrize("act", EXACT_ACTIVATIONS, ids=lambda c: c.__name__)
def test_timm_activation_is_explained_as_its_torch_twin(act: type[nn.Module], preset: str) -> None:
    ours, plain = _act_net(act()), _act_net(torch_equivalent(act())())
    x, target = _input(batch=2)[:, :, :8, :8], torch.tensor([0, 3])
    for backend in ("fast", "reference"):
        expected = attribute(plain, x, target, preset, backend=backend).input
        got = attribute(ours, x, target, preset, backend=backend).input
        assert _relative(got, expected) <= 1e-12, backend


@pytest.mark.parametrize("act", [timm_act.GELUTanh, timm_act.QuickGELU, timm_act.HardMish])
def test_timm_approximate_activations_get_a_rule(act: type[nn.Module]) -> None:
    result = attribute(_act_net(act()), _input()[:, :, :8, :8], torch.tensor([1]), "epsilon_plus")
    assert torch.isfinite(result.input).all() and result.input.abs().sum() > 0


# -- the two models end to end ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_gap_model_explains_with_backends_agreeing(name: str) -> None:
    model, x = zoo_model(name), _input()
    kinds = {type(m) for m in model.modules()}
    assert (StochasticDepth if name == "efficientnet_b0" else DropPath) in kinds
    fast = attribute(model, x, torch.tensor([1]), "epsilon_plus")
    ref = attribute(model, x, torch.tensor([1]), "epsilon_plus", backend="reference")
    torch.testing.assert_close(fast.logits, model(x), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(fast.input).all() and fast.input.abs().sum() > 0
    assert _relative(fast.input, ref.input) <= BACKEND_RTOL


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_gap_model_in_training_mode_is_explained_in_eval_mode(name: str) -> None:
    # stochastic depth and drop path are random in training: the explainer switches every module
    # to eval for the pass and back after it
    model = copy.deepcopy(zoo_model(name))
    x, target = _input(), torch.tensor([2])
    expected = Explainer(model, EpsilonPlus())(x, target).input
    model.train()
    got = Explainer(model, EpsilonPlus())(x, target).input
    assert all(m.training for m in model.modules())
    assert _relative(got, expected) <= 1e-12


def test_efficientnet_b0_under_epsilon() -> None:
    model = zoo_model("efficientnet_b0")
    attribute(model, _input()[:, :, :32, :32], torch.tensor([1]), "epsilon")


# -- Zennit oracle ------------------------------------------------------------------------------
def _held_gate(x: Tensor, gate: Tensor) -> Tensor:
    """``x * gate`` whose gradient to ``x`` is the identity and to ``gate`` zero: in Zennit's
    relevance form the gate rule (all relevance to the feature map, none to the gate's branch)."""
    return x + (x * gate - x).detach()


def _efficientnet_canonizers() -> list:
    """Zennit's view of torchvision's EfficientNet: residual sums as ``Sum`` modules, the
    squeeze-and-excitation gate held constant."""

    def block_forward(self: MBConv, x: Tensor) -> Tensor:
        result = self.block(x)
        if not self.use_res_connect:
            return result
        return self.canonizer_sum(torch.stack([self.stochastic_depth(result), x], dim=-1))

    def se_forward(self: SqueezeExcitation, x: Tensor) -> Tensor:
        return _held_gate(x, self._scale(x))

    def attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, MBConv):
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, SqueezeExcitation):
            return {"forward": se_forward.__get__(module)}
        return None

    return [CompositeCanonizer([SequentialMergeBatchNorm(), AttributeCanonizer(attributes)])]


def _regnet_canonizers(model: nn.Module) -> list:
    """Zennit's view of timm's RegNetY (``model`` with its ``BatchNormAct2d`` split into
    ``Sequential(BatchNorm2d, drop, act)``): each BatchNorm merged into its convolution, residual
    sums as ``Sum`` modules, the gate held constant."""

    def block_forward(self: Bottleneck, x: Tensor) -> Tensor:
        out = self.conv3(self.se(self.conv2(self.conv1(x))))
        if self.downsample is not None:
            out = self.canonizer_sum(torch.stack([self.drop_path(out), self.downsample(x)], dim=-1))
        return self.act3(out)

    def se_forward(self: SEModule, x: Tensor) -> Tensor:
        s = self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True)))))
        return _held_gate(x, self.gate(s))

    def attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, Bottleneck):
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, SEModule):
            return {"forward": se_forward.__get__(module)}
        return None

    pairs = [
        ([f"{name}.conv"], f"{name}.bn.0")
        for name, m in model.named_modules()
        if isinstance(m, ConvNormAct)
    ]
    return [CompositeCanonizer([NamedMergeBatchNorm(pairs), AttributeCanonizer(attributes)])]


def _zennit_twin(name: str) -> tuple[nn.Module, list]:
    """The model as Zennit runs it (activations out of place) and its canonizers."""
    twin = copy.deepcopy(zoo_model(name))
    if name == "regnety_002":
        twin = _split_norm_act(twin)
    for m in twin.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    if name == "efficientnet_b0":
        return twin, _efficientnet_canonizers()
    return twin, _regnet_canonizers(twin)


ZENNIT_CASES = [
    ("efficientnet_b0", "epsilon_plus"),
    ("regnety_002", "epsilon_plus"),
    ("regnety_002", "epsilon"),
    ("regnety_002", "epsilon_alpha2_beta1"),
]


@pytest.mark.parametrize(("name", "preset"), ZENNIT_CASES)
def test_zoo_gap_model_matches_zennit(name: str, preset: str) -> None:
    model, x, target = zoo_model(name), _input(batch=2), torch.tensor([1, 3])
    twin, canonizers = _zennit_twin(name)
    ours = attribute(model, x, target, preset)
    out_rel = torch.zeros_like(ours.logits)
    out_rel[range(2), target] = ours.logits[range(2), target]
    theirs, _ = _zennit(twin, x, out_rel, ZENNIT[preset](canonizers), [])
    _assert_close(ours.input, theirs, f"{name} {preset} input")
