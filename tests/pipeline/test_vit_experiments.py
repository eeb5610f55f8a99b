"""The ViT pruning experiments end to end, tiny: heads and MLP neurons, few-shot and iterative."""

from __future__ import annotations

import pytest

from prune.run.evaluate import evaluate
from prune.run.rounds import train
from tests.conftest import FAST, TINY_VIT, compose_cfg, with_output

HEADS = 2 * 4  # blocks x heads


def _kept(row: dict) -> int:
    return sum(len(v) for v in row["plan"]["keep"].values())


def test_vit_fewshot_removes_heads_without_fine_tuning_and_reloads(tmp_path) -> None:
    overrides = ["+experiment=mnist_vit_fewshot", *TINY_VIT, "pruner.rounds=3", "pruner.ratio=0.75"]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    results = train(cfg)
    rounds = results["rounds"]
    assert results["status"] == "complete" and len(rounds) == 4
    assert [_kept(r) for r in rounds[1:]] == [6, 4, 2]  # constant steps of 2 heads
    assert set(results["plan"]["keep"]) == {"blocks.0.attn", "blocks.1.attn"}
    assert all(r["test/acc"] == r["test/acc_pruned"] for r in rounds[1:])  # no fine-tuning
    flops = [r["cost/flops"] for r in rounds]
    assert flops == sorted(flops, reverse=True) and len(set(flops)) == 4
    assert "prune/auc_pruned" in results

    # the pruned checkpoint reloads into a dense ViT built from its stored config and plan
    ckpt = rounds[-1]["checkpoint"]
    eval_cfg = with_output(compose_cfg("evaluate", [*FAST, f"ckpt_path={ckpt}"]), tmp_path / "ev")
    res = evaluate(eval_cfg)
    assert res["test/acc"] == pytest.approx(rounds[-1]["test/acc"], abs=1e-6)
    assert res["plan"] == results["plan"]


@pytest.mark.parametrize("target", ["heads_and_neurons", "heads", "neurons"])
def test_vit_iterative_pruning_fine_tunes_heads_and_neurons(target: str, tmp_path) -> None:
    overrides = [
        "+experiment=mnist_vit_prune",
        *TINY_VIT,
        f"pruner.target={target}",
        "pruner.ratio=0.5",
        "pruner.rounds=2",
        "retrain.max_epochs=1",
    ]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    results = train(cfg)
    rounds = results["rounds"]
    assert results["status"] == "complete" and len(rounds) == 3
    dense = {"heads": HEADS, "neurons": 2 * 32}  # blocks x heads, blocks x MLP width (2 x dim)
    kinds = ["heads", "neurons"] if target == "heads_and_neurons" else [target]
    kept = sum(round(dense[k] * 0.5) for k in kinds)  # the same half of every module
    assert _kept(rounds[-1]) == kept
    holder = {"heads": "attn", "neurons": "mlp"}
    holders = {f"blocks.{b}.{holder[k]}" for b in (0, 1) for k in kinds}
    assert set(results["plan"]["keep"]) == holders
    assert rounds[-1]["cost/flops"] < rounds[1]["cost/flops"] < rounds[0]["cost/flops"]
    assert rounds[-1]["kept"]["units_kept"] == kept


def test_a_timm_vit_loses_heads_by_lrp_and_reloads(tmp_path) -> None:
    overrides = [
        "+experiment=mnist_vit_fewshot",
        *(o for o in TINY_VIT if not o.startswith("model.")),  # the sizes of prune.models.ViT
        "model=timm",
        "model.name=vit_tiny_patch16_224",
        "model.kwargs={img_size:28,patch_size:7,embed_dim:16,depth:2,num_heads:4}",
        "model.scheduler=null",  # the experiment's OneCycleLR would merge with timm's cosine
        "pruner.rounds=2",
        "pruner.ratio=0.5",
    ]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    assert cfg.model.net._target_ == "prune.models.TimmNet" and cfg.lrp._target_.endswith("AttnLRP")
    results = train(cfg)
    rounds = results["rounds"]
    assert results["status"] == "complete" and len(rounds) == 3
    assert [_kept(r) for r in rounds[1:]] == [6, 4]  # of 2 blocks x 4 heads
    assert set(results["plan"]["keep"]) == {"model.blocks.0.attn", "model.blocks.1.attn"}
    flops = [r["cost/flops"] for r in rounds]
    assert flops[0] > flops[1] > flops[2]

    # the pruned timm checkpoint reloads from its stored config (the kwargs) and plan
    ckpt = rounds[-1]["checkpoint"]
    eval_cfg = with_output(compose_cfg("evaluate", [*FAST, f"ckpt_path={ckpt}"]), tmp_path / "ev")
    res = evaluate(eval_cfg)
    assert res["test/acc"] == pytest.approx(rounds[-1]["test/acc"], abs=1e-6)
    assert res["cost/flops"] == flops[-1] and res["plan"] == results["plan"]
