"""Heads and MLP neurons of timm's Vision Transformer scored and cut out; torchvision's heads
once its attention is written out (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from prune.errors import ConfigError
from prune.lrp import Explainer, RelevanceStats, attribute
from prune.models import TorchvisionNet, ViT
from prune.models.explicit_attention import SelfAttention, explicit_attention
from prune.pruning import Pruner, PruningPlan, apply_plan
from prune.pruning.criteria import (
    AttentionCriterion,
    GradientCriterion,
    LRPCriterion,
    MagnitudeCriterion,
    RandomCriterion,
    TaylorCriterion,
)
from prune.pruning.heads_view import HeadsView, expose_heads, heads_out_name
from prune.pruning.transformer import is_attention, is_mlp, kind_of, unit_groups

SIDE, PATCH, DIM, HEADS, HEAD_DIM, HIDDEN = 8, 4, 16, 4, 4, 32
# float64 models: removing dead heads or neurons changes only the summation order.
TOL = {"atol": 1e-10, "rtol": 1e-10}


def _timm(
    fused: bool = True, qk_norm: bool = False, layer_scale: float | None = 0.5, seed: int = 0
) -> nn.Module:
    torch.manual_seed(seed)
    model = TimmViT(
        img_size=SIDE,
        patch_size=PATCH,
        in_chans=1,
        num_classes=3,
        embed_dim=DIM,
        depth=2,
        num_heads=HEADS,
        mlp_ratio=HIDDEN / DIM,
        qk_norm=qk_norm,
        init_values=layer_scale,  # LayerScale after each branch
    )
    for block in model.blocks:
        block.attn.fused_attn = fused
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model.double().eval()


def _x(batch: int = 6, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, SIDE, SIDE, generator=gen, dtype=torch.float64)


def _example() -> Tensor:
    return torch.zeros(1, 1, SIDE, SIDE, dtype=torch.float64)


def _kill_heads(model: nn.Module, block: int, heads: list[int]) -> None:
    """Zero the value rows of ``heads``: their outputs ``A @ v`` are then exactly zero."""
    qkv = model.blocks[block].attn.qkv
    with torch.no_grad():
        qkv.weight.view(3, HEADS, HEAD_DIM, DIM)[2, heads] = 0
        qkv.bias.view(3, HEADS, HEAD_DIM)[2, heads] = 0


def _kill_neurons(model: nn.Module, block: int, neurons: list[int]) -> None:
    """Zero the incoming weights and biases of ``neurons``: their GELU outputs are zero."""
    fc1 = model.blocks[block].mlp.fc1
    with torch.no_grad():
        fc1.weight[neurons] = 0
        fc1.bias[neurons] = 0


def _keep(width: int, removed: list[int]) -> list[int]:
    return [i for i in range(width) if i not in removed]


def _lrp_stats(
    model: nn.Module,
    record: list[str],
    unit_dim: int,
    composite: str = "attnlrp",
    batches: list | None = None,
) -> RelevanceStats:
    """Relevance stats of ``record`` over two batches of ``_x`` (labels ``i % 3``)."""
    stats = RelevanceStats(num_classes=3, unit_dims=dict.fromkeys(record, unit_dim))
    explainer = Explainer(model, composite, record)
    for x, y in batches or [(_x(seed=seed), torch.arange(6) % 3) for seed in range(2)]:
        result = explainer(x, y)
        stats.update(result.input, result.output, y)
    return stats


def test_timm_attention_and_mlp_hold_heads_and_neurons() -> None:
    block = _timm(qk_norm=True).blocks[0]
    assert is_attention(block.attn) and kind_of(block.attn) == "heads"
    assert is_mlp(block.mlp) and kind_of(block.mlp) == "neurons"
    assert not is_attention(_timm_scale_norm().blocks[0].attn)  # a norm over all heads
    groups = unit_groups(_timm(), "neurons")
    assert [(g.name, g.width) for g in groups] == [
        ("blocks.0.mlp", HIDDEN),
        ("blocks.1.mlp", HIDDEN),
    ]


def _timm_scale_norm() -> nn.Module:
    return TimmViT(
        img_size=SIDE,
        patch_size=PATCH,
        embed_dim=DIM,
        depth=1,
        num_heads=HEADS,
        scale_attn_norm=True,
    )


@pytest.mark.parametrize("qk_norm", [False, True], ids=["plain", "qk_norm"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
def test_removing_dead_timm_heads_keeps_the_logits(fused: bool, qk_norm: bool) -> None:
    dense = _timm(fused, qk_norm)
    _kill_heads(dense, 0, [1, 3])
    _kill_heads(dense, 1, [0])
    x = _x()
    before = dense(x)
    plan = PruningPlan(keep={"blocks.0.attn": [0, 2], "blocks.1.attn": [1, 2, 3]})
    pruned = apply_plan(copy.deepcopy(dense), plan, _example())
    attn = pruned.blocks[0].attn
    assert (attn.num_heads, attn.attn_dim, attn.head_dim) == (2, 2 * HEAD_DIM, HEAD_DIM)
    assert (attn.qkv.out_features, attn.proj.in_features) == (3 * 2 * HEAD_DIM, 2 * HEAD_DIM)
    assert pruned.blocks[1].attn.num_heads == 3
    torch.testing.assert_close(pruned(x), before, **TOL)
    alive = apply_plan(
        copy.deepcopy(dense), PruningPlan(keep={"blocks.0.attn": [1, 3]}), _example()
    )
    assert not torch.allclose(alive(x), before, atol=1e-6)  # the kept heads are the dead ones


def test_removing_dead_timm_neurons_keeps_the_logits() -> None:
    dense = _timm()
    removed = [0, 7, 31]
    _kill_neurons(dense, 1, removed)
    x = _x()
    before = dense(x)
    plan = PruningPlan(keep={"blocks.1.mlp": _keep(HIDDEN, removed)})
    pruned = apply_plan(copy.deepcopy(dense), plan, _example())
    mlp = pruned.blocks[1].mlp
    assert (mlp.fc1.out_features, mlp.fc2.in_features) == (HIDDEN - 3, HIDDEN - 3)
    torch.testing.assert_close(pruned(x), before, **TOL)


def test_lrp_neuron_pruning_of_a_timm_vit_removes_dead_neurons_first() -> None:
    model = _timm(layer_scale=None)
    removed = [2, 9]
    with torch.no_grad():  # dead for fc2: no relevance reaches them
        model.blocks[0].mlp.fc2.weight[:, removed] = 0
    pruner = Pruner(LRPCriterion(), target="neurons", keep=2 * HIDDEN - 2)
    record = pruner.record_names(model, _example())
    assert record == ["blocks.0.mlp.fc1", "blocks.1.mlp.fc1"]
    plan = pruner.plan(model, _example(), stats=_lrp_stats(model, record, -1))
    assert plan.keep["blocks.0.mlp"] == _keep(HIDDEN, removed)
    assert plan.keep["blocks.1.mlp"] == list(range(HIDDEN))
    before = model(_x())
    torch.testing.assert_close(apply_plan(model, plan, _example())(_x()), before, **TOL)


@pytest.mark.parametrize("qk_norm", [False, True], ids=["plain", "qk_norm"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
def test_exposing_timm_heads_keeps_the_outputs_and_the_state_dict(fused, qk_norm) -> None:
    model = _timm(fused, qk_norm)
    x, keys = _x(), list(model.state_dict())
    before = model(x)
    assert expose_heads(model) == ["blocks.0.attn", "blocks.1.attn"]
    assert isinstance(model.blocks[0].attn.norm, HeadsView)
    assert heads_out_name(model.blocks[0].attn) == "norm.heads_out"
    assert torch.equal(model(x), before)
    assert list(model.state_dict()) == keys
    assert expose_heads(model) == []  # once
    heads = []
    model.blocks[1].attn.norm.heads_out.register_forward_hook(lambda m, a, out: heads.append(out))
    model(x)
    assert heads[0].shape == (6, HEADS, (SIDE // PATCH) ** 2 + 1, HEAD_DIM)
    apply_plan(model, PruningPlan(keep={"blocks.1.attn": [0, 3]}), _example())
    assert model(x).shape == before.shape  # the view follows a head cut


def _ours_like(timm: nn.Module) -> ViT:
    """prune.models.ViT with the weights of ``_timm(layer_scale=None)``: the same function."""
    ours = ViT((1, SIDE, SIDE), 3, patch_size=PATCH, dim=DIM, depth=2, heads=HEADS, mlp_ratio=2.0)
    for m in ours.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 1e-6  # timm's
    state = {
        k.replace("patch_embed.proj.", "patch_embed."): v for k, v in timm.state_dict().items()
    }
    ours.load_state_dict(state)
    return ours.double().eval()


HEAD_CRITERIA = {
    "lrp attnlrp": (LRPCriterion, "attnlrp"),
    "lrp cp_lrp": (LRPCriterion, "cp_lrp"),
    "lrp abslrp": (LRPCriterion, "abslrp"),
    "taylor": (TaylorCriterion, None),
    "gradient": (GradientCriterion, None),
    "attention": (AttentionCriterion, None),
    "magnitude": (MagnitudeCriterion, None),
}


@pytest.mark.parametrize("name", list(HEAD_CRITERIA))
def test_timm_heads_score_as_the_same_heads_of_our_vit(name: str) -> None:
    timm = _timm(layer_scale=None)
    ours = _ours_like(timm)
    x = _x()
    torch.testing.assert_close(timm(x), ours(x), **TOL)
    criterion, composite = HEAD_CRITERIA[name]
    batches = [(_x(seed=i), torch.arange(6) % 3) for i in range(2)]
    scores = []
    for model in (timm, ours):
        pruner = Pruner(criterion(), target="heads", keep=2 * HEADS - 3)
        pruner.validate(model, _example())
        record = pruner.record_names(model, _example())
        stats = _lrp_stats(model, record, 1, composite, batches) if composite else None
        groups = pruner.groups(model)
        inputs = {"stats": stats, "batches": batches}
        needs = {k: v for k, v in inputs.items() if k in pruner.criterion.needs}
        scores.append(pruner.criterion.head_scores(model, groups, **needs))
        scores[-1]["plan"] = pruner.plan(model, _example(), stats=stats, batches=batches).keep
    for key in ("blocks.0.attn", "blocks.1.attn"):
        torch.testing.assert_close(scores[0][key], scores[1][key], rtol=1e-8, atol=1e-12)
    assert scores[0]["plan"] == scores[1]["plan"]


def test_lrp_head_pruning_of_a_timm_vit_removes_dead_heads_first() -> None:
    model = _timm(layer_scale=None)
    _kill_heads(model, 0, [1, 3])
    pruner = Pruner(LRPCriterion(), target="heads", keep=2 * HEADS - 2)
    record = pruner.record_names(model, _example())
    assert record == ["blocks.0.attn.norm.heads_out", "blocks.1.attn.norm.heads_out"]
    plan = pruner.plan(model, _example(), stats=_lrp_stats(model, record, 1))
    assert plan.keep == {"blocks.0.attn": [0, 2], "blocks.1.attn": list(range(HEADS))}
    before = model(_x())
    torch.testing.assert_close(apply_plan(model, plan, _example())(_x()), before, **TOL)


def test_heads_of_a_torchvision_vit_are_refused_naming_multihead_attention() -> None:
    model = TorchvisionViT(SIDE, PATCH, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16)
    pruner = Pruner(RandomCriterion(), target="heads")
    attention = r"'encoder\.layers\.encoder_layer_0\.self_attention'"
    pattern = attention + r" is a torch\.nn\.\S+\.MultiheadAttention"
    with pytest.raises(ValueError, match=pattern) as error:
        pruner.validate(model, torch.zeros(1, 3, SIDE, SIDE))
    assert "\n" not in str(error.value)


def _torchvision(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TorchvisionViT(
        SIDE, PATCH, num_layers=2, num_heads=HEADS, hidden_dim=DIM, mlp_dim=32, num_classes=3
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model.double().eval()


def test_written_out_torchvision_attention_keeps_the_outputs_and_loses_dead_heads_first() -> None:
    model = _torchvision()
    x, y = _x().expand(-1, 3, -1, -1), torch.arange(6) % 3
    before = model(x)
    relevance = {p: attribute(model, x, y, p).input for p in ("attnlrp", "cp_lrp", "abslrp")}
    names = explicit_attention(model)
    assert names == [f"encoder.layers.encoder_layer_{b}.self_attention" for b in (0, 1)]
    attention = model.get_submodule(names[0])
    assert isinstance(attention, SelfAttention) and is_attention(attention)
    torch.testing.assert_close(model(x), before, **TOL)
    explainer = Explainer(model, "abslrp")
    explainer(x, y)
    assert explainer.engine._program is not None  # a reused explainer traces it
    for preset, expected in relevance.items():  # the canonizer's explicit attention's relevance
        got = attribute(model, x, y, preset).input
        if preset == "attnlrp":  # its stabiliser on the canonizer's scale product, not the fused
            scale = expected.abs().max()
            torch.testing.assert_close(got / scale, expected / scale, rtol=0, atol=1e-5)
        else:
            torch.testing.assert_close(got, expected, **TOL)
    with torch.no_grad():  # heads 1 and 3 of block 0 dead: no value rows
        attention.qkv.weight.view(3, HEADS, HEAD_DIM, DIM)[2, [1, 3]] = 0
        attention.qkv.bias.view(3, HEADS, HEAD_DIM)[2, [1, 3]] = 0
    pruner = Pruner(LRPCriterion(), target="heads", keep=2 * HEADS - 2)
    example = torch.zeros(1, 3, SIDE, SIDE, dtype=torch.float64)
    pruner.validate(model, example)
    record = pruner.record_names(model, example)
    assert record == [f"{n}.heads_out" for n in names]
    rgb = [(_x(seed=seed).expand(-1, 3, -1, -1), torch.arange(6) % 3) for seed in range(2)]
    plan = pruner.plan(model, example, stats=_lrp_stats(model, record, 1, "cp_lrp", rgb))
    assert plan.keep == {names[0]: [0, 2], names[1]: list(range(HEADS))}
    before = model(x)
    torch.testing.assert_close(apply_plan(model, plan, example)(x), before, **TOL)


def test_attention_that_cannot_be_written_out_is_refused_in_one_line() -> None:
    model = nn.Sequential(nn.MultiheadAttention(8, 2))  # sequence-first
    refusal = r"'0' \(MultiheadAttention\) cannot be written out: it is not batch-first"
    with pytest.raises(ConfigError, match=refusal):
        explicit_attention(model)
    attention, x = SelfAttention(8, 2, 4), torch.zeros(1, 3, 8)
    with pytest.raises(ValueError, match="key and value are query"):
        attention(x, torch.ones(1, 3, 8), torch.ones(1, 3, 8), need_weights=False)
    with pytest.raises(ValueError, match="returns no attention weights; call it with need_"):
        attention(x, x, x)  # nn.MultiheadAttention's default need_weights=True
    with pytest.raises(ValueError, match="takes no key_padding_mask, attn_mask or is_causal"):
        attention(x, x, x, need_weights=False, is_causal=True)
    with pytest.raises(TypeError, match="attn_masks"):  # a misspelt option is not passed over
        attention(x, x, x, need_weights=False, attn_masks=None)
    assert attention(x, x, x, need_weights=False, attn_mask=None)[1] is None


def test_torchvision_net_writes_its_vit_attention_out() -> None:
    net = TorchvisionNet((3, 224, 224), 10, name="vit_b_16", explicit_attention=True)
    blocks = net.model.encoder.layers
    assert all(isinstance(b.self_attention, SelfAttention) for b in blocks)
    assert sum(g.width for g in unit_groups(net, "heads")) == 12 * 12
    with pytest.raises(ConfigError, match="resnet18 has no nn.MultiheadAttention to write out"):
        TorchvisionNet((1, 28, 28), 10, name="resnet18", explicit_attention=True)
