"""No lost work: atomic writes, resume after an interruption, failing sweep jobs recorded."""

from __future__ import annotations

import json

import pytest
from omegaconf import open_dict

import prune.run.results as results_module
from prune.run import entry
from prune.run.hydra_callbacks import summarize
from prune.run.results import write_json
from prune.run.rounds import train
from tests.conftest import compose_cfg, with_output
from tests.reliability.helpers import TINY_PRUNE, CrashAt, volatile


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = write_json(tmp_path / "results.json", {"round": 1})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results_module.os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"round": 2})
    assert json.loads(path.read_text()) == {"round": 1}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


@pytest.mark.slow
def test_interrupted_retraining_resumes_with_the_same_plan(tmp_path):
    overrides = [*TINY_PRUNE, "retrain.max_epochs=2"]
    reference = train(with_output(compose_cfg("train", overrides), tmp_path / "ref"))

    out = tmp_path / "run"
    cfg = with_output(compose_cfg("train", overrides), out)
    with open_dict(cfg):  # crash in epoch 1 of the 2nd fit (round 1's retraining)
        cfg.callbacks.crash = {
            "_target_": "tests.reliability.helpers.CrashAt",
            "fit": 2,
            "epoch": 1,
        }
    CrashAt.fits = 0
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train(cfg)
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "running" and saved["pending"]["round"] == 1
    assert (out / "checkpoints" / "round_1" / "last.ckpt").is_file()

    with open_dict(cfg):
        cfg.resume = True
    CrashAt.fits = 0  # the resumed run fits once: no crash
    resumed = train(cfg)
    assert resumed["status"] == "complete"
    assert resumed["plan"] == reference["plan"] == saved["pending"]["plan"]
    assert volatile(resumed["rounds"][0]) == volatile(reference["rounds"][0])
    assert resumed["rounds"][1]["test/acc_pruned"] == reference["rounds"][1]["test/acc_pruned"]
    assert "pending" not in json.loads((out / "results.json").read_text())
    # resuming a complete run changes nothing
    before = (out / "results.json").read_text()
    assert train(cfg)["status"] == "complete"
    assert (out / "results.json").read_text() == before


def test_failing_sweep_job_is_recorded_and_does_not_stop_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(entry, "_in_multirun", lambda: True)
    job = tmp_path / "1_pruner.ratio=1.5"
    cfg = with_output(compose_cfg("train", [*TINY_PRUNE, "pruner.ratio=1.5"]), job)
    result = entry.run(train, cfg)  # no SystemExit: the next job still runs
    assert result["status"] == "failed" and "pruner.ratio" in result["error"]
    (tmp_path / "0_ok").mkdir()
    (tmp_path / "0_ok" / "results.json").write_text(
        json.dumps({"status": "complete", "config": {}, "final": {"test/acc": 0.9}})
    )
    rows = {r["job"]: r["status"] for r in summarize(tmp_path)}
    assert rows["0_ok"] == "complete"
    assert rows[job.name].startswith("failed: ConfigError: pruner.ratio must be in [0, 1)")
