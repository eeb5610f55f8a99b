"""Every rule's kernel (fast backend) equals its reference form on every model kind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune.lrp import COMPOSITES, Explainer, attribute
from prune.lrp.composites import LayerMap, SpecialFirstLayer, base_layer_map
from prune.lrp.fast import KERNELS
from prune.lrp.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Norm, Pass, WSquare, ZBox, ZPlus
from prune.lrp.types import ACTIVATION_TYPES, LINEAR_TYPES

from .conftest import MODEL_KINDS, make_input, make_model

#: rules for every linear and conv layer
LAYER_RULES = {
    "lrp0": LRP0(),
    "epsilon": Epsilon(1e-3),
    "zplus": ZPlus(),
    "alpha2_beta1": AlphaBeta(2.0, 1.0),
    "alpha1_beta0": AlphaBeta(1.0, 0.0),
    "gamma": Gamma(0.5),
}
#: rules for the first layer (epsilon on the others)
FIRST_RULES = {"zbox": ZBox(-3.0, 3.0), "wsquare": WSquare(), "flat": Flat()}


def _composite(rule_name: str):
    if rule_name in FIRST_RULES:
        layer_map = [*base_layer_map(), (LINEAR_TYPES, Epsilon(1e-3))]
        return SpecialFirstLayer(layer_map, [(LINEAR_TYPES, FIRST_RULES[rule_name])])
    return LayerMap([*base_layer_map(), (LINEAR_TYPES, LAYER_RULES[rule_name])])


def _assert_same(fast, ref, what: str) -> None:
    """Agreement relative to the largest value: 1e-12 in float64."""
    scale = ref.abs().max().clamp_min(1e-300)
    err = ((fast - ref).abs().max() / scale).item()
    assert err <= 1e-12, f"{what}: fast and reference differ by {err:.2e} (relative to max)"


def _compare(model, x, composite, target=None) -> None:
    layers = [n for n, m in model.named_modules() if n and next(m.children(), None) is None]
    fast = attribute(model, x, target, composite, record=layers)
    ref = attribute(model, x, target, composite, record=layers, backend="reference")
    _assert_same(fast.input, ref.input, "input")
    for name in layers:
        _assert_same(fast.output[name], ref.output[name], name)


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("rule", [*LAYER_RULES, *FIRST_RULES])
@pytest.mark.parametrize("sign", ["mixed", "nonnegative"])
def test_kernel_equals_reference_for_every_rule(kind, rule, sign) -> None:
    model = make_model(kind)
    x = make_input()
    if sign == "nonnegative":
        x = x.abs()
    _compare(model, x, _composite(rule), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("preset", sorted(COMPOSITES))
def test_kernel_equals_reference_for_every_preset(kind, preset) -> None:
    _compare(make_model(kind), make_input(), preset, torch.tensor([2, 0, 1]))


def test_every_shipped_rule_has_a_kernel() -> None:
    for rule in [*LAYER_RULES.values(), *FIRST_RULES.values(), Pass(), Norm()]:
        assert type(rule) in KERNELS


def test_traced_fast_explainer_equals_reference() -> None:
    model = make_model("resnet")
    x = make_input(batch=5)
    fast = Explainer(model, "epsilon_plus")  # traced from the first call
    ref = Explainer(model, "epsilon_plus", backend="reference")
    for _ in range(2):
        _assert_same(fast(x).input, ref(x).input, "input")
    assert fast.engine._program is not None and ref.engine._program is None


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown LRP backend 'quick'; choose from"):
        Explainer(make_model("mlp"), "epsilon", backend="quick")


class _Custom(nn.Module):
    """A rule-less activation whose relevance must follow the Pass rule in both backends."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 3)

    def forward(self, x):
        h = self.act(self.fc1(x))
        return self.fc2(h + h.mean(-1, keepdim=True))


def test_gelu_and_functional_mean_agree_across_backends() -> None:
    torch.manual_seed(0)
    model = _Custom().double().eval()
    composite = LayerMap([(ACTIVATION_TYPES, Pass()), (LINEAR_TYPES, Epsilon())])
    _compare(model, torch.randn(4, 6, dtype=torch.float64), composite, torch.tensor([0, 1, 2, 0]))
