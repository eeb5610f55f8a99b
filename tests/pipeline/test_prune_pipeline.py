from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prune.data import SyntheticDataModule
from prune.run.build import build_datamodule, build_module
from prune.run.checkpoint import load_checkpoint
from prune.run.evaluate import evaluate
from prune.run.explain import explain
from prune.run.hydra_callbacks import write_summary
from prune.run.rounds import train
from tests.conftest import CONF, FAST, compose_cfg, with_output

EXPERIMENTS = sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml"))
TINY = [
    *FAST,
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "data.relevance_per_class=4",
    "measure.latency_batches=[1]",
]
SMALL_EXPLANATIONS = [
    "explanations.num_images=24",
    "explanations.gae_samples=8",
    "explanations.batch_size=12",
    "explanations.flip_steps=4",
]
EXTRA = {  # what makes each experiment tiny beyond TINY (few-shot keeps retrain.max_epochs=0)
    "mnist_prune": ["retrain.max_epochs=1", "pruner.rounds=3"],
    "mnist_channels": ["retrain.max_epochs=1"],
    "fashion_mnist_channels": ["retrain.max_epochs=1"],
    "cifar10_resnet56_channels": ["retrain.max_epochs=1", "model.net.depth=8"],
    "fashion_mnist_resnet18_channels": ["retrain.max_epochs=1"],
    "mnist_removal": SMALL_EXPLANATIONS,
    "mnist_vit_removal": SMALL_EXPLANATIONS,
    "fashion_mnist_vit_removal": SMALL_EXPLANATIONS,
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_a_tiny_version(experiment, tmp_path):
    overrides = [f"+experiment={experiment}", *TINY, *EXTRA.get(experiment, [])]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    if cfg.get("pruner"):
        cfg.pruner.rounds = min(cfg.pruner.rounds, 2)
    results = train(cfg)
    assert results["status"] == "complete"
    assert len(results["rounds"]) == 1 + (cfg.pruner.rounds if cfg.get("pruner") else 0)
    if cfg.get("explanations"):
        table = results["explanations"]["table"]
        assert "random" in table and len(table) > 1
        assert (tmp_path / "explanations" / "flip_curves.png").is_file()
    assert results["rounds"][-1]["cost/flops"] <= results["rounds"][0]["cost/flops"]


def test_input_pruning_recovers_the_deciding_block_and_evaluates(tmp_path):
    overrides = [
        "+experiment=mnist_prune",
        *FAST,
        "trainer.max_epochs=3",
        "retrain.max_epochs=2",
        "pruner.rounds=3",
        "pruner.keep=16",  # the deciding block has 4 x 4 pixels
        "data.relevance_per_class=50",
    ]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    results = train(cfg)
    dm = SyntheticDataModule(**{k: v for k, v in cfg.data.items() if k not in ("_target_",)})
    dm.setup()
    signal = dm.signal_mask().flatten().nonzero().flatten().tolist()
    kept = results["plan"]["input_keep"]
    assert len(set(kept) & set(signal)) >= 12, (kept, signal)
    assert results["final"]["test/acc"] > 0.9
    # only the first layer shrinks: 784 -> 16 input columns of a 300-unit Linear
    saved = 2 * 300 * (784 - 16)
    assert results["final"]["cost/flops"] == results["rounds"][0]["cost/flops"] - saved

    # the pruned checkpoint loads into a dense model built from config
    ckpt = results["rounds"][-1]["checkpoint"]  # the last round's best checkpoint
    eval_cfg = with_output(compose_cfg("evaluate", [*FAST, f"ckpt_path={ckpt}"]), tmp_path / "eval")
    res = evaluate(eval_cfg)
    assert res["test/acc"] == pytest.approx(results["final"]["test/acc"], abs=1e-6)
    assert res["plan"]["input_keep"] == kept

    # retrain.scheduler (exponential decay in mnist_prune) drives fine-tuning only
    dense_ckpt = load_checkpoint(results["rounds"][0]["checkpoint"])
    tuned_ckpt = load_checkpoint(ckpt)
    assert not dense_ckpt.get("lr_schedulers")
    (state,) = tuned_ckpt["lr_schedulers"]
    assert state["gamma"] == cfg.retrain.scheduler.gamma == 0.6


def test_relevance_mass_sits_in_the_deciding_block(tmp_path):
    cfg = with_output(
        compose_cfg("train", [*FAST, "trainer.max_epochs=3", "data.relevance_per_class=50"]),
        tmp_path,
    )
    train(cfg)  # dense only (no pruner)
    # rebuild and explain the trained model from its checkpoint
    ckpt = torch.load(tmp_path / "checkpoints" / "round_0" / "last.ckpt", weights_only=True)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    module.load_state_dict(ckpt["state_dict"])
    stats = explain(cfg, module, dm, "epsilon", record=["layers.0"])
    mask = dm.signal_mask()
    rel = stats.input_abs
    # The block is 16 of 784 pixels (2%); the other 768 are uniform noise that carries no
    # label information but still receives some relevance through random first-layer weights.
    share = rel[mask].sum() / rel.sum()
    assert share > 0.15, float(share)
    assert rel[mask].mean() > 10 * rel[~mask].mean()
    top = rel.flatten().topk(16).indices
    assert mask.flatten()[top].sum() >= 14
    assert stats.num_samples == 4 * 50 and stats.channels["layers.0"].shape == (300,)


def test_sweep_summary_lists_jobs_and_failures(tmp_path):
    for i, (crit, acc, flops) in enumerate([("lrp", 0.95, 100), ("random", 0.80, 100)]):
        job = tmp_path / f"{i}_pruner={crit}"
        job.mkdir()
        res = {
            "status": "complete",
            "config": {
                "seed": 1,
                "pruner": {"criterion": {"_target_": f"x.{crit.upper()}Criterion"}},
            },
            "final": {"test/acc": acc, "cost/flops": flops},
        }
        (job / "results.json").write_text(json.dumps(res))
    (tmp_path / "2_pruner=broken").mkdir()
    csv_path, plot = write_summary(tmp_path)
    text = csv_path.read_text()
    assert "lrp" in text and "random" in text
    assert '2_pruner=broken,"no results.json' in text  # listed, without a made-up reason
    assert plot is not None and plot.is_file()
