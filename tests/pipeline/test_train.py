from __future__ import annotations

import json

import pytest
import torch

from prune.module import ClassifierModule
from prune.run.build import build_datamodule, build_module
from prune.run.checkpoint import load_checkpoint
from prune.run.evaluate import evaluate
from prune.run.rounds import train
from tests.conftest import FAST, compose_cfg, with_output


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = with_output(compose_cfg("train", [*FAST, "model=mlp", "trainer.max_epochs=3"]), out)
    results = train(cfg)
    return cfg, out, results


def test_short_training_on_synthetic_beats_chance(trained_run):
    _, out, results = trained_run
    assert results["rounds"][0]["test/acc"] > 0.9  # 4 classes: chance is 0.25
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "complete"
    assert saved["data"]["source"] == "synthetic"
    assert saved["config"]["model"]["net"]["_target_"] == "prune.models.MLP"


def test_run_writes_checkpoints_and_tensorboard(trained_run):
    _, out, _ = trained_run
    ckpts = out / "checkpoints" / "round_0"
    assert (ckpts / "last.ckpt").is_file() and any(
        p.name.startswith("best") for p in ckpts.iterdir()
    )
    assert (out / "tensorboard" / "round_0").is_dir() and (out / "tensorboard" / "summary").is_dir()


def test_checkpoint_round_trip_gives_identical_outputs(trained_run):
    cfg, out, _ = trained_run
    ckpt = load_checkpoint(out / "checkpoints" / "round_0" / "last.ckpt")
    dm = build_datamodule(cfg)
    a, b = build_module(cfg, dm), build_module(cfg, dm)
    a.load_state_dict(ckpt["state_dict"])
    loaded = ClassifierModule.load_from_checkpoint(
        out / "checkpoints" / "round_0" / "last.ckpt", net=b.net, weights_only=True
    )
    x = a.normalize(dm.test_set.x[:16])
    torch.testing.assert_close(a.eval()(x), loaded.eval()(x), rtol=0, atol=0)


def test_evaluate_reproduces_test_accuracy(trained_run, tmp_path):
    _cfg, out, results = trained_run
    best = next(p for p in (out / "checkpoints" / "round_0").iterdir() if p.name.startswith("best"))
    eval_cfg = with_output(compose_cfg("evaluate", [*FAST, f"ckpt_path={best}"]), tmp_path)
    res = evaluate(eval_cfg)
    assert res["test/acc"] == pytest.approx(results["rounds"][0]["test/acc"], abs=1e-6)
    assert res["cost/flops"] == results["rounds"][0]["cost/flops"]
    assert json.loads((tmp_path / "evaluation.json").read_text())["status"] == "complete"


def test_dense_ckpt_prunes_the_weights_as_they_are(trained_run, tmp_path):
    _cfg, out, results = trained_run
    best = next(p for p in (out / "checkpoints" / "round_0").iterdir() if p.name.startswith("best"))
    pruning = ["pruner=lrp", "pruner.keep=32", "pruner.rounds=1", "retrain.max_epochs=1"]
    overrides = [*FAST, "model=mlp", "trainer.max_epochs=3", *pruning, f"dense_ckpt={best}"]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    again = train(cfg)
    dense = again["rounds"][0]
    assert dense["test/acc"] == pytest.approx(results["rounds"][0]["test/acc"], abs=1e-6)
    # no epoch was trained: no Lightning checkpoint, the weights kept as the run's own
    assert dense["checkpoint"] == str(tmp_path / "checkpoints" / "round_0" / "dense.ckpt")
    assert not (tmp_path / "checkpoints" / "round_0" / "last.ckpt").exists()
    torch.testing.assert_close(
        load_checkpoint(dense["checkpoint"])["state_dict"],
        load_checkpoint(best)["state_dict"],
        rtol=0,
        atol=0,
    )
    assert len(again["rounds"]) == 2 and again["status"] == "complete"  # then cut as usual
    res = evaluate(
        with_output(
            compose_cfg("evaluate", [*FAST, f"ckpt_path={dense['checkpoint']}"]), tmp_path / "e"
        )
    )
    assert res["test/acc"] == pytest.approx(dense["test/acc"], abs=1e-6)


def test_evaluate_refuses_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        load_checkpoint(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(bad)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": torch.nn.Linear(2, 2)}, path)  # a pickled module
    with pytest.raises(ValueError, match="could not be loaded safely"):
        load_checkpoint(path)


def test_evaluate_rebuilds_another_model_from_the_checkpoint_config(tmp_path):
    # evaluate.yaml defaults to model=mlp; the checkpoint's own config (lenet5) must win
    cfg = with_output(
        compose_cfg("train", [*FAST, "model=lenet5", "trainer.limit_train_batches=2"]), tmp_path
    )
    results = train(cfg)
    ckpt = tmp_path / "checkpoints" / "round_0" / "last.ckpt"
    eval_cfg = with_output(compose_cfg("evaluate", [*FAST, f"ckpt_path={ckpt}"]), tmp_path / "e")
    res = evaluate(eval_cfg)
    assert res["cost/flops"] == results["rounds"][0]["cost/flops"]


def _bare_trainer(**kwargs):
    """A CPU Trainer for a training loop alone: no logger, checkpoints, bar or validation."""
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kwargs,
    )


def test_epoch_training_loss_and_accuracy_equal_a_recount():
    """The on-device epoch sums behind train/loss and train/acc equal a plain recount."""
    import torch.nn.functional as F

    from prune.data import SyntheticDataModule
    from prune.models import MLP

    dm = SyntheticDataModule(num_train=256, num_test=64, batch_size=64, val_size=0)
    dm.setup()
    torch.manual_seed(0)
    module = ClassifierModule(MLP(in_shape=dm.in_shape, num_classes=dm.num_classes))
    # lr=0: the weights do not move, so a recount after the epoch sees the same model
    module.optimizer_factory = lambda params: torch.optim.SGD(params, lr=0.0)
    trainer = _bare_trainer(max_epochs=1)
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    x, y = module.normalize(dm.train_set.x), dm.train_set.y
    with torch.no_grad():
        logits = module.net(x)
    got = trainer.callback_metrics
    assert float(got["train/loss"]) == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    acc = (logits.argmax(1) == y).float().mean().item()
    assert float(got["train/acc"]) == pytest.approx(acc, abs=1e-6)


def test_only_rank_zero_writes_results(tmp_path, monkeypatch):
    """Under DDP every rank runs the pipeline; results and weight files come from rank 0."""
    from lightning.pytorch.utilities import rank_zero_only

    from prune.models import MLP
    from prune.run.checkpoint import save_weights
    from prune.run.results import write_results

    module = ClassifierModule(MLP(in_shape=(1, 4, 4), num_classes=3, hidden=[5]))
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    write_results(tmp_path / "results.json", {"a": 1})
    save_weights(module, tmp_path / "w.ckpt")
    assert not any(tmp_path.iterdir())
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    write_results(tmp_path / "results.json", {"a": 1})
    save_weights(module, tmp_path / "w.ckpt")
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1}
    assert (tmp_path / "w.ckpt").is_file()


def test_written_out_step_equals_lightnings_automatic_loop():
    """The manual step (the default) gives the same weights and scheduler state as Lightning's
    automatic loop, which the module falls back to when the Trainer asks for clipping."""

    from prune.data import SyntheticDataModule
    from prune.models import MLP

    dm = SyntheticDataModule(num_train=256, num_test=64, batch_size=32, val_size=0)
    dm.setup()

    def fit(**trainer_kwargs):
        torch.manual_seed(0)
        module = ClassifierModule(MLP(in_shape=dm.in_shape, num_classes=dm.num_classes))
        module.scheduler_factory = lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 1)
        trainer = _bare_trainer(max_epochs=2, **trainer_kwargs)
        torch.manual_seed(1)  # same shuffling
        trainer.fit(module, train_dataloaders=dm.train_dataloader())
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        return module, trainer, lr

    manual, t_manual, lr_manual = fit()
    auto, t_auto, lr_auto = fit(gradient_clip_val=1e9)  # clipping that never bites
    assert not manual.automatic_optimization and auto.automatic_optimization
    assert t_manual.global_step == t_auto.global_step == 2 * 256 // 32
    assert lr_manual == lr_auto == pytest.approx(1e-3 * 0.1**2)
    for a, b in zip(manual.state_dict().values(), auto.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
