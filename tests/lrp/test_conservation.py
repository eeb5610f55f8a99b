"""Conservation: without biases and with epsilon -> 0, every layer carries the explained output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune.lrp import attribute
from prune.lrp.composites import LayerMap, NameMap, SpecialFirstLayer, base_layer_map
from prune.lrp.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Norm, WSquare, ZBox, ZPlus
from prune.lrp.types import CONV_TYPES, LINEAR_TYPES
from prune.models.resnet_small import BasicBlock

TINY = 1e-12
# Rules for every linear/conv layer but the output layer (LRP-0 there, as in the presets), and
# rules meant for the first layer only. z+ and gamma conserve because a neuron that carries
# relevance (z > 0 after a ReLU) has a positive contribution; alpha-beta conserves only where a
# neuron has contributions of both signs, which tiny layers do not guarantee: tested apart.
EVERYWHERE = {
    "lrp0": LRP0(),
    "epsilon": Epsilon(TINY),
    "zplus": ZPlus(TINY),
    "gamma": Gamma(0.25, TINY),
}
FIRST_LAYER = {"zbox": ZBox(-3.0, 3.0, TINY), "flat": Flat(TINY), "wsquare": WSquare(TINY)}


def _composite(model: nn.Module, rule_name: str) -> NameMap:
    base = base_layer_map(TINY)
    output_layer = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    if rule_name in EVERYWHERE:
        fallback = LayerMap(
            [*base, (LINEAR_TYPES, EVERYWHERE[rule_name])], op_map={"add": Norm(TINY)}
        )
    else:
        types = CONV_TYPES if rule_name == "zbox" else LINEAR_TYPES
        layer_map = [*base, (LINEAR_TYPES, LRP0())]
        first = [(types, FIRST_LAYER[rule_name])]
        fallback = SpecialFirstLayer(layer_map, first, op_map={"add": Norm(TINY)})
    return NameMap({output_layer: LRP0()}, fallback=fallback)


def _cut(model: nn.Module) -> list[str]:
    """Modules whose outputs together carry all relevance: every leaf, but whole residual blocks."""
    blocks = [n for n, m in model.named_modules() if isinstance(m, BasicBlock)]
    return [
        n
        for n, m in model.named_modules()
        if n
        and (
            n in blocks
            or (next(m.children(), None) is None and not any(n.startswith(b + ".") for b in blocks))
        )
    ]


def _layer_sums(model: nn.Module, x: torch.Tensor, rule_name: str):
    res = attribute(model, x, None, _composite(model, rule_name), record=_cut(model))
    return res.sums(), res.explained


@pytest.mark.parametrize("rule_name", [*EVERYWHERE, *FIRST_LAYER])
def test_rule_conserves_relevance_without_bias(
    kind, rule_name, build, inputs, unbiased, seed
) -> None:
    if rule_name == "zbox" and kind == "mlp":
        pytest.skip("the box rule applies to a first convolution; the MLP has none")
    if rule_name == "zplus" and kind == "resnet":
        pytest.skip("z+ absorbs a residual branch unit with z <= 0 and no positive contribution")
    model = unbiased(build(kind, seed))
    sums, explained = _layer_sums(model, inputs(seed), rule_name)
    for name, total in sums.items():
        # float64 with epsilon 1e-12: only rounding remains
        torch.testing.assert_close(total, explained, rtol=1e-9, atol=1e-12, msg=f"{name}")


@pytest.mark.parametrize("rule_name", ["epsilon", "zplus"])
def test_bias_breaks_conservation(kind, rule_name, build, inputs) -> None:
    model = build(kind)  # biases (and BatchNorm shifts) on: they absorb relevance
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.add_(0.5)
    sums, explained = _layer_sums(model, inputs(), rule_name)
    assert not torch.allclose(sums["<input>"], explained, rtol=1e-3)


def test_alpha_beta_conserves_where_both_signs_contribute(seed) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, 32, bias=False), nn.ReLU(), nn.Linear(32, 3, bias=False)
    ).double()
    x = (
        torch.rand(4, 64, dtype=torch.float64) + 0.1
    )  # dense positive inputs: every unit mixes signs
    composite = NameMap(
        {"0": AlphaBeta(2.0, 1.0, TINY), "2": LRP0()}, fallback=_composite(model, "lrp0")
    )
    res = attribute(model, x, None, composite, record=["0", "1"])
    for name, total in res.sums().items():
        torch.testing.assert_close(total, res.explained, rtol=1e-9, atol=1e-12, msg=name)


class _Branchy(nn.Module):
    """fc1's output feeds a ReLU branch and a linear branch, and is changed in place last."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = (nn.Linear(6, 8), nn.Linear(8, 3), nn.Linear(8, 3))
        self.relu, self.inplace = nn.ReLU(), inplace

    def forward(self, x):
        z = self.fc1(x)
        out = self.fc2(self.relu(z)) + self.fc3(z)
        if self.inplace:  # a third consumer that modifies z: its own share, taken before
            z += 1.0
            out = out + self.fc3(z)
        return out


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("epsilon", [0.0, TINY])
def test_recorded_output_with_several_consumers(inplace, epsilon) -> None:
    """A recorded output read by a ReLU, a linear layer and an in-place op gets the relevance of
    all three: with zero biases and epsilon -> 0 it is z * d f_c / d z (LRP-0 = gradient x input).
    Each consumer records its own share (engine.py), so none may be missed or counted twice."""
    torch.manual_seed(0)
    model = _Branchy(inplace).double()
    for m in (model.fc1, model.fc2, model.fc3):
        nn.init.zeros_(m.bias)
    x = torch.randn(5, 6, dtype=torch.float64)
    rules = [*base_layer_map(epsilon), (LINEAR_TYPES, Epsilon(epsilon))]
    composite = LayerMap(rules, op_map={"add": Norm(epsilon or TINY)})
    res = attribute(model, x, torch.tensor([0, 1, 2, 0, 1]), composite, record=["fc1"])
    z = model.fc1(x).detach().requires_grad_()
    h = model.fc2(torch.relu(z)) + model.fc3(z)
    if inplace:
        h = h + model.fc3(z + 1.0)
    # z's share of the in-place z + 1 is z / (z + 1) of its relevance: z times the gradient too
    (grad,) = torch.autograd.grad(h[torch.arange(5), [0, 1, 2, 0, 1]].sum(), z)
    torch.testing.assert_close(res.output["fc1"], z.detach() * grad, rtol=1e-9, atol=1e-12)
