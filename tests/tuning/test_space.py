"""The pieces of a search: layer groups, the composite with a rule per group, the search space."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from prune.errors import ConfigError
from prune.lrp import Explainer
from prune.lrp.composites import AttnLRP
from prune.lrp.rules import Epsilon, Gamma, ZPlus
from prune.models import ViT
from prune.tuning import RULES, GroupRules, SearchSpace, groups_before, layer_groups
from prune.tuning.composite import group_rules_config
from prune.tuning.fewshot import Curve
from prune.tuning.space import base_params

GROUPS = {
    "attention": ["attn.qkv", "attn.proj"],
    "mlp": ["mlp.fc1", "mlp.fc2"],
    "head": ["head"],
    "patch_embed": ["patch_embed"],
}
HEADS_OUT = ["blocks.0.attn.heads_out", "blocks.1.attn.heads_out"]


@pytest.fixture
def vit() -> ViT:
    torch.manual_seed(0)
    return ViT((1, 28, 28), num_classes=3, dim=8, depth=2, heads=2).double().eval()


def _relevance(model: ViT, composite, x: torch.Tensor) -> dict[str, torch.Tensor]:
    res = Explainer(model, composite, HEADS_OUT, trace=False)(x, torch.tensor([0, 1, 2]))
    return {"input": res.input, **res.output}


def test_layer_groups_find_every_block_by_suffix(vit) -> None:
    layers = layer_groups(vit, GROUPS)
    assert layers["attention"] == [f"blocks.{b}.attn.{n}" for b in (0, 1) for n in ("qkv", "proj")]
    assert layers["mlp"] == [f"blocks.{b}.mlp.{n}" for b in (0, 1) for n in ("fc1", "fc2")]
    assert layers["head"] == ["head"] and layers["patch_embed"] == ["patch_embed"]


def test_layer_groups_refuse_a_pattern_that_finds_nothing_or_a_layer_claimed_twice(vit) -> None:
    with pytest.raises(ConfigError, match=r"tune.space.groups.norm=\['norm1'\] names no linear"):
        layer_groups(vit, {"norm": ["norm1"]})
    with pytest.raises(ConfigError, match="'head' is in tune.space.groups.a and .*groups.b"):
        layer_groups(vit, {"a": ["head"], "b": ["head"]})


def test_only_the_patch_embedding_runs_before_the_heads(vit) -> None:
    layers = layer_groups(vit, GROUPS)
    assert groups_before(vit, torch.zeros(1, 1, 28, 28).double(), layers, HEADS_OUT) == [
        "patch_embed"
    ]


def test_group_rules_with_the_base_rule_give_the_base_relevance(vit) -> None:
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    layers = layer_groups(vit, GROUPS)
    same = GroupRules(AttnLRP(), layers, {group: Epsilon(1e-6) for group in layers})
    expected, got = _relevance(vit, AttnLRP(), x), _relevance(vit, same, x)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12)


def test_a_rule_on_the_patch_embedding_leaves_the_heads_relevance_alone(vit) -> None:
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    layers = layer_groups(vit, GROUPS)
    expected = _relevance(vit, AttnLRP(), x)
    zplus = _relevance(vit, GroupRules(AttnLRP(), layers, {"patch_embed": ZPlus()}), x)
    for name in HEADS_OUT:
        torch.testing.assert_close(zplus[name], expected[name], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(zplus["input"], expected["input"])
    gamma = _relevance(vit, GroupRules(AttnLRP(), layers, {"mlp": Gamma(1.0)}), x)
    assert not torch.allclose(gamma[HEADS_OUT[0]], expected[HEADS_OUT[0]])


class _Fixed:
    """An Optuna trial stand-in that takes the first choice and the low end of each range."""

    def suggest_categorical(self, name: str, choices: list) -> object:
        return choices[0]

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return low


def test_search_space_suggests_a_rule_and_its_value_per_group_and_builds_them() -> None:
    space = SearchSpace(GROUPS, rules=["gamma", "zplus"], gamma=[0.1, 2.0])
    params = space.suggest(_Fixed(), ["mlp", "head"])
    assert params == {
        "mlp.rule": "gamma",
        "mlp.gamma": 0.1,
        "head.rule": "gamma",
        "head.gamma": 0.1,
        "aggregate": "abs",
    }
    rules = space.rules_of(params, stabilizer=1e-9)
    assert set(rules) == {"mlp", "head"} and all(isinstance(r, Gamma) for r in rules.values())
    assert rules["mlp"].gamma == 0.1 and rules["mlp"].stabilizer == 1e-9
    assert space.contains(params)
    default = base_params(["mlp", "head"], 1e-6, None, "unit_abs")
    assert default["mlp.rule"] == "epsilon" and not space.contains(default)  # epsilon not offered


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rules": ["epsilon", "lrp9"]}, "tune.space.rules must be a non-empty list of"),
        ({"epsilon": [0.0, 1.0]}, r"tune.space.epsilon must be a list \[low, high\] with 0 < low"),
        ({"gamma": [1.0, 0.5]}, r"tune.space.gamma must be a list \[low, high\]"),
        ({"aggregates": []}, "tune.space.aggregates must be a non-empty list"),
    ],
)
def test_search_space_refuses_bad_values_by_name(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchSpace(GROUPS, **kwargs)


def test_every_rule_choice_builds_a_rule() -> None:
    for name, (value, build) in RULES.items():
        assert build(None if value is None else 0.5, 1e-6) is not None, name


def test_curve_area_is_the_trapezoid_with_the_dense_model_at_zero() -> None:
    assert Curve([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]).area == pytest.approx(0.5)


def test_the_config_of_a_group_composite_builds_the_same_composite(vit) -> None:
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    layers = {"mlp": layer_groups(vit, GROUPS)["mlp"], "head": ["head"]}
    rules = {"mlp": Gamma(0.3, 1e-6), "head": ZPlus(1e-6)}
    base = {"_target_": "prune.lrp.composites.AttnLRP", "epsilon": 1e-6}
    built = instantiate(group_rules_config(base, layers, rules))
    assert isinstance(built, GroupRules) and isinstance(built.base, AttnLRP)
    expected = _relevance(vit, GroupRules(AttnLRP(epsilon=1e-6), layers, rules), x)
    for name, relevance in _relevance(vit, built, x).items():
        torch.testing.assert_close(relevance, expected[name], rtol=0, atol=0)
