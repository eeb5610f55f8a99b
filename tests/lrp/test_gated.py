"""Gated products (squeeze-and-excitation) under the presets: the gate held constant (float64).

The presets give an elementwise product the gate rule (:class:`prune.lrp.rules.Gate`): the
factor of the output's full shape takes all relevance, a broadcast gate none. Zennit has no rule
for such a product: its relevance travels backward as the gradient itself, and a product scales
it by the other factor. A product whose backward hands the incoming relevance to the feature map
unchanged and none to the gate (``_HeldGate``) is the same rule in Zennit's terms, and the oracle
below. timm's EfficientNet is not compared with Zennit: its ``BatchNormAct2d`` layers would need
a Zennit canonizer of their own.
"""

from __future__ import annotations

import copy
import functools

import pytest
import timm
import torch
import torchvision
from timm.models._efficientnet_blocks import SqueezeExcite
from torch import Tensor, nn
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.ops import SqueezeExcitation
from zennit.canonizers import AttributeCanonizer, CompositeCanonizer, SequentialMergeBatchNorm
from zennit.layer import Sum

from prune.lrp import Explainer, attribute, get_composite
from prune.lrp.fast.gate import GateKernel  # registers the gate rule's kernel
from prune.lrp.rules import Gate, Op
from prune.lrp.state import RunState

from .conftest import zero_biases
from .test_zennit_oracle import BN_EPS, ZENNIT, _assert_close, _zennit
from .test_zoo import _randomize_batchnorm, _relative

#: the presets that give ``mul`` the gate rule
PRESETS = sorted(ZENNIT)
CLASSES = 4


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


class _HeldGate(torch.autograd.Function):
    """``x * s`` for Zennit: the incoming relevance to ``x`` unchanged, none to the gate."""

    @staticmethod
    def forward(ctx, x: Tensor, s: Tensor) -> Tensor:
        ctx.gate_shape = s.shape
        return x * s

    @staticmethod
    def backward(ctx, relevance: Tensor):
        # zeros, not None: Zennit's hooks in the gate's branch still run and need a tensor
        return relevance, relevance.new_zeros(ctx.gate_shape)


class _SqueezeExcite(nn.Module):
    """torchvision's squeeze-and-excitation: pool, reduce, act, expand, gate, ``x * gate``."""

    def __init__(self, channels: int, hidden: int, gate: type[nn.Module]) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = gate()
        self.held = False  # True in Zennit's copy

    def forward(self, x: Tensor) -> Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return _HeldGate.apply(x, s) if self.held else x * s


#: the gate branches of the tiny net, by module name
GATE_BRANCH = [f"{se}.{part}" for se in ("3", "7") for part in ("reduce", "expand", "gate")]


def _se_net(seed: int = 0) -> nn.Module:
    """Two conv + BatchNorm stages, each followed by an SE block (sigmoid, hard sigmoid)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8, eps=BN_EPS),
        nn.ReLU(),
        _SqueezeExcite(8, 4, nn.Sigmoid),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8, eps=BN_EPS),
        nn.Hardswish(),
        _SqueezeExcite(8, 2, nn.Hardsigmoid),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, CLASSES),
    )
    model = model.double().eval()
    _randomize_batchnorm(model, seed)
    return model


def _input(batch: int = 2, size: int = 8, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(batch, 3, size, size, generator=gen, dtype=torch.float64)


# -- the rule and its kernel ------------------------------------------------------------------
_SHAPES = {  # factors' shapes -> the relevance each takes, as a fraction of R (0: none)
    "gate": (((2, 3, 4, 4), (2, 3, 1, 1)), (1.0, 0.0)),
    "gate first": (((2, 3, 1, 1), (2, 3, 4, 4)), (0.0, 1.0)),
    "glu": (((2, 3, 4, 4), (2, 3, 4, 4)), (0.5, 0.5)),
    "outer": (((2, 3, 1, 1), (2, 1, 4, 4)), (0.5, 0.5)),
}


@pytest.mark.parametrize("case", sorted(_SHAPES))
def test_gate_rule_gives_the_full_factor_all_relevance(case: str) -> None:
    shapes, fractions = _SHAPES[case]
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes)
    r = torch.randn(torch.broadcast_shapes(*shapes), generator=gen, dtype=torch.float64)
    ra, rb = Gate().relevance(Op(torch.mul, name="mul"), a, b, relevance=r)
    for rel, x, fraction in ((ra, a, fractions[0]), (rb, b, fractions[1])):
        assert rel.shape == x.shape
        torch.testing.assert_close(rel, (fraction * r).sum_to_size(x.shape), rtol=1e-15, atol=0)
    # every element of R ends up somewhere, exactly once
    torch.testing.assert_close(ra.sum() + rb.sum(), r.sum(), rtol=1e-12, atol=0)


def test_gate_rule_passes_a_single_factor_relevance_unchanged() -> None:
    x, r = (torch.randn(2, 3, 4, 4, dtype=torch.float64) for _ in range(2))
    (rx,) = Gate().relevance(Op(lambda t: t * 0.5, name="mul"), x, relevance=r)
    assert torch.equal(rx, r)
    pooled = torch.randn(2, 3, 1, 1, dtype=torch.float64)  # x (N, C, 1, 1) * a constant map
    (rp,) = Gate().relevance(Op(lambda t: t * torch.ones(4, 4), name="mul"), pooled, relevance=r)
    torch.testing.assert_close(rp, r.sum((2, 3), keepdim=True), rtol=1e-15, atol=0)


@pytest.mark.parametrize("case", sorted(_SHAPES))
def test_gate_kernel_is_the_rule_in_gradient_form(case: str) -> None:
    shapes, _ = _SHAPES[case]
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes)
    out = GateKernel(Gate()).op("mul", (a, b), {}, False, RunState())
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    ga, gb = torch.autograd.grad(out, (a, b), g)
    torch.testing.assert_close(out, a * b, rtol=0, atol=0)
    ra, rb = Gate().relevance(Op(torch.mul), a.detach(), b.detach(), relevance=out.detach() * g)
    torch.testing.assert_close(a.detach() * ga, ra, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(b.detach() * gb, rb, rtol=1e-12, atol=1e-15)


# -- a tiny SE network under every preset ------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_fast_and_reference_agree_and_the_gate_branch_gets_nothing(preset: str) -> None:
    model, x, target = _se_net(), _input(), torch.tensor([1, 3])
    layers = [n for n, m in model.named_modules() if n and next(m.children(), None) is None]
    fast = attribute(model, x, target, preset, record=layers)
    ref = attribute(model, x, target, preset, record=layers, backend="reference")
    torch.testing.assert_close(fast.logits, model(x), rtol=1e-12, atol=1e-12)
    assert _relative(fast.input, ref.input) <= 1e-12
    for name in layers:
        assert _relative(fast.output[name], ref.output[name]) <= 1e-12, name
    for name in GATE_BRANCH:
        assert not fast.output[name].any() and not ref.output[name].any(), name
    assert fast.output["6"].abs().sum() > 0  # the gated feature map carries it


def test_traced_explainer_equals_attribute() -> None:
    model, x, target = _se_net(), _input(batch=3), torch.tensor([0, 2, 1])
    explainer = Explainer(model, "epsilon_plus")  # traced on the first call
    expected = attribute(model, x, target, "epsilon_plus").input
    for _ in range(2):
        assert _relative(explainer(x, target).input, expected) <= 1e-12
    assert explainer.engine._program is not None


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_relevance_is_conserved_through_gates_without_biases(backend: str) -> None:
    model = zero_biases(_se_net(seed=2))
    composite = get_composite("epsilon", epsilon=1e-30, stabilizer=1e-30)
    cuts = ["3", "4", "7", "10"]  # after each gate, and the logits
    result = attribute(model, _input(), torch.tensor([0, 2]), composite, cuts, backend)
    for where, total in result.sums().items():
        torch.testing.assert_close(total, result.explained, rtol=1e-9, atol=0, msg=where)


@pytest.mark.parametrize("preset", PRESETS)
def test_se_net_matches_zennit_with_the_gate_held(preset: str) -> None:
    ours_model = _se_net()
    theirs = copy.deepcopy(ours_model)
    for m in theirs.modules():
        if isinstance(m, _SqueezeExcite):
            m.held = True
    x, target, record = _input(), torch.tensor([1, 3]), ["3", "4"]
    ours = attribute(ours_model, x, target, preset, record=record)
    out_rel = torch.zeros_like(ours.logits)
    out_rel[[0, 1], target] = ours.logits[[0, 1], target]
    canonizers = [SequentialMergeBatchNorm()]
    rel, layers = _zennit(theirs, x, out_rel, ZENNIT[preset](canonizers), record)
    _assert_close(ours.input, rel, f"{preset} input")
    for name in record:
        _assert_close(ours.output[name], layers[name], f"{preset} {name}")


# -- torchvision's MobileNetV3 and timm's EfficientNet -------------------------------------------
@functools.cache  # built once: never modify it
def _mobilenet_v3_small() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=CLASSES).double().eval()
    _randomize_batchnorm(model, 0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = BN_EPS  # Zennit's BatchNorm merge is exact only so
    return model


@functools.cache  # built once: never modify it
def _efficientnet_b0() -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", num_classes=CLASSES).double().eval()
    _randomize_batchnorm(model, 0)
    return model


#: model -> (builder, the SE block type, the name of its gate module)
ZOO = {
    "mobilenet_v3_small": (_mobilenet_v3_small, SqueezeExcitation, "scale_activation"),
    "timm_efficientnet_b0": (_efficientnet_b0, SqueezeExcite, "gate"),
}
#: modules of each model whose outputs carry all relevance (stages with SE blocks inside)
CUTS = {
    "mobilenet_v3_small": ["features.1", "features.4", "features"],
    "timm_efficientnet_b0": ["blocks.1", "blocks.3", "blocks"],
}


def _gates(model: nn.Module, block: type[nn.Module], gate: str) -> list[str]:
    return [f"{name}.{gate}" for name, m in model.named_modules() if isinstance(m, block)]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_with_se_blocks_explain_end_to_end(name: str) -> None:
    build, block, gate = ZOO[name]
    model, x = build(), _input(batch=1, size=64)  # the last stage still 2x2: every gate broadcast
    gates = _gates(model, block, gate)
    assert len(gates) >= 9  # the model has its SE blocks
    result = attribute(model, x, torch.tensor([1]), "epsilon_plus", record=gates)
    torch.testing.assert_close(result.logits, model(x), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(result.input).all() and result.input.abs().sum() > 0
    assert not any(result.output[g].any() for g in gates)


def test_a_gate_of_the_feature_maps_shape_shares_evenly() -> None:
    # on 32x32 images MobileNetV3's last three blocks are 1x1: gate and map have one shape
    model, x = _mobilenet_v3_small(), _input(batch=1, size=32)
    gates = _gates(model, SqueezeExcitation, "scale_activation")
    names = [g.rpartition(".")[0] for g in gates]  # the SE blocks
    result = attribute(model, x, torch.tensor([1]), "epsilon_plus", record=[*gates, *names])
    shared = {g for g in gates if result.output[g].any()}
    assert shared == {f"features.{i}.block.2.scale_activation" for i in (9, 10, 11)}
    for g in shared:  # the gate's half is the map's half
        torch.testing.assert_close(
            result.output[g].sum(),
            result.output[g.rpartition(".")[0]].sum() / 2,
            rtol=1e-12,
            atol=0,
        )


@pytest.mark.parametrize("name", sorted(ZOO))
def test_relevance_is_conserved_through_the_zoo_gates_without_biases(name: str) -> None:
    model = zero_biases(copy.deepcopy(ZOO[name][0]()))
    composite = get_composite("epsilon", epsilon=1e-30, stabilizer=1e-30)
    x, target = _input(batch=2, size=32), torch.tensor([1, 2])
    result = attribute(model, x, target, composite, CUTS[name])
    for where, total in result.sums().items():
        torch.testing.assert_close(total, result.explained, rtol=1e-9, atol=0, msg=where)


def test_mobilenet_v3_small_fast_equals_reference() -> None:
    model, x = _mobilenet_v3_small(), _input(batch=1, size=32)
    fast = attribute(model, x, torch.tensor([2]), "epsilon_plus")
    ref = attribute(model, x, torch.tensor([2]), "epsilon_plus", backend="reference")
    assert _relative(fast.input, ref.input) <= 1e-12


def _mobilenet_v3_canonizer() -> CompositeCanonizer:
    """Zennit's view of torchvision's MobileNetV3: the gate held (``_HeldGate``), the residual
    sum as a ``Sum`` module (z-rule), BatchNorm merged."""

    def se_forward(self: SqueezeExcitation, x: Tensor) -> Tensor:
        return _HeldGate.apply(x, self._scale(x))

    def block_forward(self: InvertedResidual, x: Tensor) -> Tensor:
        if not self.use_res_connect:
            return self.block(x)
        return self.canonizer_sum(torch.stack([x, self.block(x)], dim=-1))

    def attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, SqueezeExcitation):
            return {"forward": se_forward.__get__(module)}
        if isinstance(module, InvertedResidual):
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        return None

    return CompositeCanonizer([SequentialMergeBatchNorm(), AttributeCanonizer(attributes)])


@pytest.mark.parametrize("preset", ["epsilon", "epsilon_plus", "epsilon_gamma_box"])
def test_mobilenet_v3_small_matches_zennit_with_the_gate_held(preset: str) -> None:
    ours_model = _mobilenet_v3_small()
    theirs = copy.deepcopy(ours_model)
    for m in theirs.modules():
        if getattr(m, "inplace", False):
            m.inplace = False  # Zennit's hooks and in-place activations
    # 64x64: the last stage is 2x2, so that every gate is broadcast (held)
    x, target, record = _input(batch=1, size=64), torch.tensor([3]), ["features.4"]
    ours = attribute(ours_model, x, target, preset, record=record)
    out_rel = torch.zeros_like(ours.logits)
    out_rel[0, target] = ours.logits[0, target]
    composite = ZENNIT[preset]([_mobilenet_v3_canonizer()])
    rel, layers = _zennit(theirs, x, out_rel, composite, record)
    _assert_close(ours.input, rel, f"mobilenet_v3_small {preset} input")
    _assert_close(ours.output["features.4"], layers["features.4"], f"{preset} features.4")
