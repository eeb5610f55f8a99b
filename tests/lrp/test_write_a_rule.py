"""The "write your own rule" page's examples, run as printed, against hand-computed relevance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from prune.lrp import attribute
from prune.lrp.composites import LayerMap
from prune.lrp.rules import Norm, Pass
from prune.lrp.types import ACTIVATION_TYPES, LINEAR_TYPES

PAGE = Path(__file__).resolve().parents[2] / "docs" / "write-a-rule.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def _rule_namespace() -> dict:
    namespace: dict = {}
    exec(_blocks()[0], namespace)  # the project's own documentation page
    return namespace


def test_the_example_rule_is_short() -> None:
    assert len(_blocks()[0].strip().splitlines()) <= 30


def _scaled_epsilon_by_hand(layers, x, out_relevance, factor):
    """Explicit float64 matrices: R_i = x_i sum_j w_ij R_j / (z_j + eps sign z_j)."""
    activations = [x]
    for i, layer in enumerate(layers):
        z = activations[-1] @ layer.weight.T + layer.bias
        activations.append(z.clamp(min=0) if i < len(layers) - 1 else z)
    r = out_relevance
    for i in reversed(range(len(layers))):
        a, w = activations[i], layers[i].weight
        z = a @ w.T + layers[i].bias
        eps = factor * z.std(1, keepdim=True)
        stab = z + eps * torch.where(z >= 0, 1.0, -1.0).to(z)
        r = torch.einsum("bi,ji,bj->bi", a, w, r / stab)
    return r


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_scaled_epsilon_matches_the_formula(backend) -> None:
    rule_cls = _rule_namespace()["ScaledEpsilon"]
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(6, 5), nn.Linear(5, 3)
    model = nn.Sequential(fc1, nn.ReLU(), fc2).double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 0])
    composite = LayerMap([(ACTIVATION_TYPES, Pass()), (LINEAR_TYPES, rule_cls(0.3))])
    res = attribute(model, x, target, composite, backend=backend)
    logits = model(x).detach()
    out = torch.zeros_like(logits).scatter_(1, target[:, None], logits.gather(1, target[:, None]))
    expected = _scaled_epsilon_by_hand([fc1, fc2], x, out, 0.3)
    torch.testing.assert_close(res.input, expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="factor must be >= 0, got -1"):
        rule_cls(-1)


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.a(x) * self.b(x))


def test_half_each_rule_splits_a_product_evenly() -> None:
    namespace = _rule_namespace()
    exec(_blocks()[2].split("\n\ncomposite =")[0], namespace)  # the class, not its use
    half_each = namespace["HalfEach"]()
    torch.manual_seed(1)
    model = _Gated().double().eval()
    torch.nn.init.zeros_(model.out.bias)  # LRP-0 without a bias conserves relevance
    x = torch.randn(5, 4, dtype=torch.float64)
    lrp0 = namespace["ScaledEpsilon"](0.0)
    composite = LayerMap([(LINEAR_TYPES, lrp0)], op_map={"mul": half_each})
    res = attribute(model, x, torch.tensor([0, 1, 0, 1, 1]), composite, record=["a", "b", "out"])
    # each factor of the product gets half of the product's relevance
    torch.testing.assert_close(res.output["a"], res.output["b"], rtol=1e-12, atol=1e-14)
    total = res.output["a"].sum(1) + res.output["b"].sum(1)
    torch.testing.assert_close(total, res.explained, rtol=1e-9, atol=1e-12)
    assert Norm  # the page's op_map example names it
