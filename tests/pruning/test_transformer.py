from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prune.evaluation.cost import count_flops
from prune.lrp import Explainer, RelevanceStats
from prune.models import MLP, ViT
from prune.module import ClassifierModule
from prune.pruning import ChannelGroup, Pruner, PruningPlan, apply_plan
from prune.pruning.criteria import (
    AttentionCriterion,
    Criterion,
    GradientCriterion,
    LRPCriterion,
    MagnitudeCriterion,
    RandomCriterion,
    TaylorCriterion,
)
from prune.pruning.surgery import applied_plan
from prune.pruning.transformer import (
    is_attention,
    is_mlp,
    output_names,
    prune_heads,
    unit_groups,
)

# float64 models: removing dead heads or neurons changes only the summation order.
TOL = {"atol": 1e-10, "rtol": 1e-10}
IN_SHAPE = (1, 8, 8)
TOKENS = (8 // 4) ** 2 + 1  # patches + class token
DIM, HEADS, HEAD_DIM, HIDDEN = 16, 4, 4, 32


def _vit(fused: bool = False, seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    model = ViT(IN_SHAPE, 3, patch_size=4, dim=DIM, depth=2, heads=HEADS, fused_attention=fused)
    with torch.no_grad():
        model.cls_token.normal_()
    return model.double().eval()


def _x(batch: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *IN_SHAPE, generator=gen, dtype=torch.float64)


def _batches(n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(_x(6, seed=i), torch.arange(6) % 3) for i in range(n)]


def _kill_heads(model: ViT, block: int, heads: list[int]) -> None:
    """Make ``heads`` dead for ``proj``: zero its incoming weights from them."""
    with torch.no_grad():
        proj = model.blocks[block].attn.proj.weight
        proj.view(DIM, HEADS, HEAD_DIM)[:, heads] = 0  # (dim, H * Dh) -> (dim, H, Dh)


def _kill_neurons(model: ViT, block: int, neurons: list[int]) -> None:
    with torch.no_grad():
        model.blocks[block].mlp.fc2.weight[:, neurons] = 0


def _keep(width: int, removed: list[int]) -> list[int]:
    return [i for i in range(width) if i not in removed]


# -- structure and surgery -------------------------------------------------------------------
def test_unit_groups_find_every_attention_and_mlp() -> None:
    model = _vit()
    assert unit_groups(model, "heads") == [
        ChannelGroup("blocks.0.attn", ("blocks.0.attn",), HEADS),
        ChannelGroup("blocks.1.attn", ("blocks.1.attn",), HEADS),
    ]
    assert [(g.name, g.width) for g in unit_groups(model, "neurons")] == [
        ("blocks.0.mlp", HIDDEN),
        ("blocks.1.mlp", HIDDEN),
    ]
    assert output_names(model, unit_groups(model, "heads"), "heads")["blocks.1.attn"] == (
        "blocks.1.attn.heads_out"
    )
    assert not unit_groups(MLP(IN_SHAPE, 3), "heads")
    assert not any(is_attention(m) or is_mlp(m) for m in MLP(IN_SHAPE, 3).modules())
    with pytest.raises(ValueError, match="unknown unit kind 'tokens'"):
        unit_groups(model, "tokens")


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
def test_apply_plan_keeps_outputs_when_removed_heads_are_dead(fused: bool) -> None:
    dense = _vit(fused)
    _kill_heads(dense, 0, [1, 3])
    _kill_heads(dense, 1, [0])
    x = _x()
    before = dense(x)
    plan = PruningPlan(
        keep={"blocks.0.attn": [0, 2], "blocks.1.attn": [1, 2, 3]},
        dense_widths={"blocks.0.attn": HEADS, "blocks.1.attn": HEADS},
    )
    pruned = apply_plan(copy.deepcopy(dense), plan)
    attn = pruned.blocks[0].attn
    assert (attn.heads, attn.qkv.out_features, attn.proj.in_features) == (2, 3 * 2 * 4, 2 * 4)
    assert pruned.blocks[1].attn.heads == 3
    torch.testing.assert_close(pruned(x), before, **TOL)


def test_apply_plan_changes_outputs_when_removed_heads_are_alive() -> None:
    dense = _vit()
    plan = PruningPlan(keep={"blocks.0.attn": [0, 2]})
    pruned = apply_plan(copy.deepcopy(dense), plan)
    assert not torch.allclose(pruned(_x()), dense(_x()), atol=1e-6)


def test_prune_heads_keeps_each_heads_q_k_and_v_slices() -> None:
    attn = _vit().blocks[0].attn
    w = attn.qkv.weight.detach().clone().view(3, HEADS, HEAD_DIM, DIM)
    b = attn.qkv.bias.detach().clone().view(3, HEADS, HEAD_DIM)
    p = attn.proj.weight.detach().clone().view(DIM, HEADS, HEAD_DIM)
    prune_heads(attn, [1, 3])
    assert torch.equal(attn.qkv.weight.view(3, 2, HEAD_DIM, DIM), w[:, [1, 3]])
    assert torch.equal(attn.qkv.bias.view(3, 2, HEAD_DIM), b[:, [1, 3]])
    assert torch.equal(attn.proj.weight.view(DIM, 2, HEAD_DIM), p[:, [1, 3]])
    assert attn.qkv.weight.requires_grad and attn.proj.weight.requires_grad
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        prune_heads(attn, [2])


def test_apply_plan_keeps_outputs_when_removed_neurons_are_dead() -> None:
    dense = _vit()
    removed = [0, 5, 31]
    _kill_neurons(dense, 1, removed)
    x = _x()
    before = dense(x)
    plan = PruningPlan(keep={"blocks.1.mlp": _keep(HIDDEN, removed)})
    pruned = apply_plan(copy.deepcopy(dense), plan)
    mlp = pruned.blocks[1].mlp
    assert (mlp.fc1.out_features, mlp.fc2.in_features) == (HIDDEN - 3, HIDDEN - 3)
    assert mlp.fc2.out_features == DIM  # the residual width is never cut
    torch.testing.assert_close(pruned(x), before, **TOL)


def test_apply_plan_refuses_out_of_range_heads_before_cutting() -> None:
    model = _vit()
    plan = PruningPlan(keep={"blocks.0.mlp": [0, 1], "blocks.1.attn": [0, 4]})
    with pytest.raises(ValueError, match="plan keeps head 4 of blocks.1.attn, which has 4 heads"):
        apply_plan(model, plan)
    assert model.blocks[0].mlp.fc1.out_features == HIDDEN  # nothing was cut


def test_head_and_neuron_plans_compose_and_replay_on_a_dense_vit() -> None:
    model = _vit()
    first = PruningPlan(
        keep={"blocks.0.attn": [0, 1, 3], "blocks.0.mlp": list(range(0, HIDDEN, 2))},
        dense_widths={"blocks.0.attn": HEADS, "blocks.0.mlp": HIDDEN},
    )
    apply_plan(model, first)
    step = PruningPlan(keep={"blocks.0.attn": [0, 2], "blocks.0.mlp": [0, 1, 15]})
    final = first.compose(step)
    assert final.keep == {"blocks.0.attn": [0, 3], "blocks.0.mlp": [0, 2, 30]}
    apply_plan(model, final)  # the step from the plan on the model
    replayed = apply_plan(_vit(), PruningPlan.from_dict(final.to_dict()))
    replayed.load_state_dict(model.state_dict())  # same shapes, strictly
    torch.testing.assert_close(replayed(_x()), model(_x()), **TOL)
    assert final.summary()["layers"]["blocks.0.attn"] == {"kept": 2, "dense": HEADS}


def test_pruned_vit_checkpoint_reloads_onto_a_fresh_dense_module() -> None:
    module = ClassifierModule(_vit().float())
    plan = PruningPlan(keep={"blocks.1.attn": [2], "blocks.0.mlp": [3, 4, 7]})
    module.apply_plan(plan)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    fresh = ClassifierModule(_vit(seed=1).float())
    fresh.on_load_checkpoint(checkpoint)  # replays the plan before the weights load
    fresh.load_state_dict(checkpoint["state_dict"])
    x = _x().float()
    torch.testing.assert_close(fresh(x), module(x), atol=0, rtol=0)
    assert fresh.net.blocks[1].attn.heads == 1


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
def test_flops_drop_by_the_removed_heads_and_neurons(fused: bool) -> None:
    model = _vit(fused).float()
    dense = count_flops(model, IN_SHAPE)
    apply_plan(model, PruningPlan(keep={"blocks.0.attn": [1], "blocks.1.attn": [0, 2, 3]}))
    removed = 3 + 1
    t, d, dh = TOKENS, DIM, HEAD_DIM
    # per head: its q, k, v rows and proj columns, then q @ k^T and A @ v (2 x MACs each)
    per_head = 2 * t * d * 3 * dh + 2 * t * dh * d + 2 * (2 * t * t * dh)
    assert count_flops(model, IN_SHAPE) == dense - removed * per_head
    after_heads = count_flops(model, IN_SHAPE)
    apply_plan(model, applied_plan(model).compose(PruningPlan(keep={"blocks.0.mlp": [0, 1]})))
    per_neuron = 2 * t * d * 2  # one fc1 row and one fc2 column
    assert count_flops(model, IN_SHAPE) == after_heads - (HIDDEN - 2) * per_neuron


# -- criteria --------------------------------------------------------------------------------
def _stats(model: ViT, record: list[str], composite: str = "attnlrp") -> RelevanceStats:
    stats = RelevanceStats(num_classes=3)
    stats.unit_dims = {
        n: -1 if isinstance(model.get_submodule(n), nn.Linear) else 1 for n in record
    }
    explainer = Explainer(model, composite, record)
    for x, y in _batches():
        res = explainer(x, y)
        stats.update(res.input, res.output, y)
    return stats


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_lrp_head_scores_sum_each_heads_output_relevance(composite: str) -> None:
    model = _vit()
    _kill_heads(model, 1, [2])
    pruner = Pruner(LRPCriterion(normalize=False), target="heads")
    record = pruner.record_names(model)
    assert record == ["blocks.0.attn.heads_out", "blocks.1.attn.heads_out"]
    stats = _stats(model, record, composite)
    scores = pruner.criterion.head_scores(model, unit_groups(model, "heads"), stats)
    # the same sums, taken here from the relevance of the heads' output (B, H, N, Dh)
    explainer = Explainer(model, composite, ["blocks.0.attn.heads_out"])
    expected = sum(
        explainer(x, y).output["blocks.0.attn.heads_out"].abs().sum((0, 2, 3))
        for x, y in _batches()
    )
    torch.testing.assert_close(scores["blocks.0.attn"], expected, rtol=1e-10, atol=0)
    assert scores["blocks.1.attn"].shape == (HEADS,)
    assert scores["blocks.1.attn"][2] == 0  # a dead head carries no relevance
    assert (scores["blocks.1.attn"][[0, 1, 3]] > 0).all()


def test_lrp_neuron_scores_read_fc1_with_units_on_the_token_features() -> None:
    model = _vit()
    _kill_neurons(model, 0, [4, 9])
    pruner = Pruner(LRPCriterion(), target="neurons")
    record = pruner.record_names(model)
    assert record == ["blocks.0.mlp.fc1", "blocks.1.mlp.fc1"]
    scores = LRPCriterion().neuron_scores(
        model, unit_groups(model, "neurons"), _stats(model, record)
    )
    s = scores["blocks.0.mlp"]
    assert s.shape == (HIDDEN,) and s[[4, 9]].eq(0).all() and s.sum().item() == pytest.approx(1.0)


def test_magnitude_head_and_neuron_scores_are_the_norms_of_what_their_cut_removes() -> None:
    model = _vit()
    crit = MagnitudeCriterion(p=2, normalize=False)
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    heads = crit.head_scores(model, unit_groups(model, "heads"))["blocks.0.attn"]
    w = attn.qkv.weight.detach().view(3, HEADS, HEAD_DIM, DIM)
    p = attn.proj.weight.detach().view(DIM, HEADS, HEAD_DIM)
    expected = torch.stack(
        [torch.cat([w[:, h].flatten(), p[:, h].flatten()]).norm() for h in range(HEADS)]
    )
    torch.testing.assert_close(heads, expected, rtol=1e-12, atol=0)
    neurons = crit.neuron_scores(model, unit_groups(model, "neurons"))["blocks.0.mlp"]
    expected = (mlp.fc1.weight.detach() ** 2).sum(1) + (mlp.fc2.weight.detach() ** 2).sum(0)
    torch.testing.assert_close(neurons, expected.sqrt(), rtol=1e-12, atol=0)


def test_taylor_head_scores_match_the_gate_gradient_of_michel_et_al() -> None:
    """|d loss / d gate| of a gate on each head's output (Michel et al. 2019), per sample."""
    model = _vit()
    batches = _batches()
    gates = [torch.ones(6, HEADS, 1, 1, dtype=torch.float64, requires_grad=True) for _ in "01"]
    expected = [torch.zeros(HEADS, dtype=torch.float64) for _ in "01"]
    handles = [
        model.blocks[b].attn.heads_out.register_forward_hook(
            lambda _m, _a, out, gate=gates[b]: out * gate  # (B, H, N, Dh) * (B, H, 1, 1)
        )
        for b in (0, 1)
    ]
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
        for b, grad in enumerate(torch.autograd.grad(loss, gates)):
            expected[b] += grad.flatten(1).abs().sum(0)
    for h in handles:
        h.remove()
    got = TaylorCriterion().head_scores(model, unit_groups(model, "heads"), batches=batches)
    for b in (0, 1):  # per-layer L1 normalisation removes the 1 / (N Dh) of the mean
        e = expected[b] / expected[b].sum()
        torch.testing.assert_close(got[f"blocks.{b}.attn"], e, rtol=1e-10, atol=0)


def test_gradient_neuron_scores_average_over_tokens() -> None:
    model = _vit()
    batches = _batches()
    outputs = []
    handle = model.blocks[1].mlp.fc1.register_forward_hook(lambda _m, _a, out: outputs.append(out))
    total = torch.zeros(HIDDEN, dtype=torch.float64)
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, outputs.pop())  # (B, T, hidden)
        total += g.abs().mean(1).sum(0)
    handle.remove()
    got = GradientCriterion(normalize=False).neuron_scores(
        model, unit_groups(model, "neurons"), batches=batches
    )
    torch.testing.assert_close(got["blocks.1.mlp"], total / 12, rtol=1e-10, atol=0)


def test_attention_criterion_is_the_mean_largest_weight_and_the_same_when_fused() -> None:
    explicit, fused = _vit(fused=False), _vit(fused=True)  # the same weights
    batches = _batches()
    groups = unit_groups(explicit, "heads")
    got = AttentionCriterion(normalize=False).head_scores(explicit, groups, batches=batches)
    same = AttentionCriterion(normalize=False).head_scores(fused, groups, batches=batches)
    inputs = []
    attn = explicit.blocks[0].attn
    handle = attn.register_forward_hook(lambda _m, args, _out: inputs.append(args[0]))
    with torch.no_grad():
        for x, _y in batches:
            explicit(x)
    handle.remove()
    expected = sum(_softmax(attn, a).amax(-1).mean(-1).sum(0) for a in inputs) / 12
    torch.testing.assert_close(got["blocks.0.attn"], expected, rtol=1e-10, atol=0)
    for name in ("blocks.0.attn", "blocks.1.attn"):
        torch.testing.assert_close(same[name], got[name], rtol=1e-10, atol=1e-12)
        assert ((got[name] >= 1 / TOKENS) & (got[name] <= 1)).all()


def _softmax(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The attention weights of ``attn`` on its input ``x``, written out independently."""
    b, n, _ = x.shape
    q, k, _v = attn.qkv(x).view(b, n, 3, attn.heads, attn.head_dim).unbind(2)  # (B, N, H, Dh)
    logits = torch.einsum("bihd,bjhd->bhij", q, k) / attn.head_dim**0.5
    return logits.softmax(-1).detach()


def test_random_head_scores_are_seeded() -> None:
    groups = unit_groups(_vit(), "heads")
    a = RandomCriterion(seed=2).head_scores(_vit(), groups)
    b = RandomCriterion(seed=2).head_scores(_vit(), groups)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_criterion_that_targets_heads_without_head_scores_is_refused() -> None:
    with pytest.raises(TypeError, match="does not implement head_scores but targets"):

        class _Broken(Criterion):
            targets = frozenset({"heads"})


# -- pruner ----------------------------------------------------------------------------------
CRITERIA = {
    "lrp": LRPCriterion,
    "magnitude": MagnitudeCriterion,
    "taylor": TaylorCriterion,
    "gradient": GradientCriterion,
    "random": RandomCriterion,
    "attention": AttentionCriterion,
}
CASES = [(t, n) for t in ("heads", "neurons") for n, c in CRITERIA.items() if t in c.targets]


@pytest.mark.parametrize(("target", "name"), CASES)
def test_pruner_plans_heads_and_neurons_with_every_criterion(target: str, name: str) -> None:
    model = _vit()
    pruner = Pruner(CRITERIA[name](), target=target, ratio=0.75, rounds=2)

    def stats() -> RelevanceStats | None:
        return _stats(model, pruner.record_names(model)) if "stats" in pruner.needs else None

    width = HEADS if target == "heads" else HIDDEN
    holders = [f"blocks.{b}.{'attn' if target == 'heads' else 'mlp'}" for b in (0, 1)]
    assert pruner.total(model) == 2 * width
    plan = pruner.plan(model, stats=stats(), batches=_batches(), round_index=1)
    assert sorted(plan.keep) == holders
    assert sum(len(v) for v in plan.keep.values()) == round(2 * width * (1 - 0.375))
    assert plan.dense_widths == dict.fromkeys(holders, width)
    apply_plan(model, plan)
    later = pruner.plan(model, stats=stats(), batches=_batches(), round_index=2)
    assert sum(len(v) for v in later.keep.values()) == round(2 * width * 0.25)
    assert all(len(v) >= 1 for v in later.keep.values())  # min_width
    assert set(later.relative_to(plan).keep) == set(holders)  # a subset: never regrows


def test_pruner_min_width_keeps_a_head_in_every_block() -> None:
    model = _vit()
    plan = Pruner(MagnitudeCriterion(), target="heads", ratio=0.95, min_width=1).plan(model)
    assert [len(plan.keep[g]) for g in ("blocks.0.attn", "blocks.1.attn")] == [1, 1]


def test_pruner_refuses_heads_on_a_model_without_attention() -> None:
    pruner = Pruner(MagnitudeCriterion(), target="heads")
    with pytest.raises(ValueError, match="MLP has no heads to prune"):
        pruner.validate(MLP(IN_SHAPE, 3))
    with pytest.raises(ValueError, match=r"pruner.keep must be <= 8 \(the heads\)"):
        Pruner(MagnitudeCriterion(), target="heads", keep=9).validate(_vit())
    with pytest.raises(ValueError, match=r"pruner.keep must be <= 64 \(the neurons\)"):
        Pruner(MagnitudeCriterion(), target="neurons", keep=65).validate(_vit())


def test_pruner_refuses_a_criterion_that_cannot_score_neurons() -> None:
    with pytest.raises(ValueError, match="cannot score target='neurons'"):
        Pruner(AttentionCriterion(), target="neurons")


BOTH = [n for n, c in CRITERIA.items() if {"heads", "neurons"} <= c.targets]


@pytest.mark.parametrize("name", BOTH)
def test_heads_and_neurons_cut_each_module_as_its_own_target_would(name: str) -> None:
    model = _vit()
    both = Pruner(CRITERIA[name](), "heads_and_neurons", ratio=0.5, global_ranking=False)
    record = both.record_names(model)
    stats = _stats(model, record) if "stats" in both.needs else None
    assert both.total(model) == 2 * HEADS + 2 * HIDDEN
    plan = both.plan(model, stats=stats, batches=_batches())
    for kind in ("heads", "neurons"):
        alone = Pruner(CRITERIA[name](), kind, ratio=0.5, global_ranking=False)
        assert set(alone.record_names(model)) <= set(record)
        one = alone.plan(model, stats=stats, batches=_batches())
        assert {k: plan.keep[k] for k in one.keep} == one.keep
    assert len(plan.keep) == 4
    flops = count_flops(model, IN_SHAPE)
    assert count_flops(apply_plan(model, plan), IN_SHAPE) < flops


def test_heads_and_neurons_are_refused_a_global_ranking_and_a_heads_only_criterion() -> None:
    with pytest.raises(ValueError, match="global_ranking=true cannot rank heads against neurons"):
        Pruner(MagnitudeCriterion(), target="heads_and_neurons")
    with pytest.raises(ValueError, match=r"cannot score target='heads_and_neurons'.*\['heads'\]"):
        Pruner(AttentionCriterion(), target="heads_and_neurons", global_ranking=False)
    pruner = Pruner(MagnitudeCriterion(), target="heads_and_neurons", global_ranking=False)
    with pytest.raises(ValueError, match="MLP has no heads_and_neurons to prune"):
        pruner.validate(MLP(IN_SHAPE, 3))
