"""Sweeps: safe job folder names for path values, and a summary.csv that says what happened."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from prune.run.hydra_callbacks import summarize, write_summary
from tests.reliability.helpers import ROOT, TINY_BASE, child_env

UNSAFE = '/\\:*?"<>|\x00'


def _results(status: str = "complete", **extra: object) -> dict:
    """A results.json of a run pruned by ``keep=9`` (36 units: 0.75 removed) in 3 rounds."""
    config = {
        "seed": 1,
        "pruner": {
            "criterion": {"_target_": "prune.pruning.criteria.lrp.LRPCriterion"},
            "target": "units",
            "ratio": 0.5,  # the default, replaced by keep
            "keep": 9,
            "rounds": 3,
        },
    }
    rounds = [
        {"round": 0, "test/acc": 0.9},
        {"round": 1, "prune/ratio": 0.369973, "test/acc": 0.88},
        {"round": 2, "prune/ratio": 0.603150, "test/acc": 0.85},
        {"round": 3, "prune/ratio": 0.75, "test/acc": 0.123456789, "cost/flops": 1216},
    ]
    res = {"status": status, "config": config, "rounds": rounds, **extra}
    if status == "complete":
        res["final"] = rounds[-1]
    return res


def _job(root: Path, name: str, results: dict | None = None, error: str | None = None) -> Path:
    job = root / name
    job.mkdir(parents=True)
    if results is not None:
        (job / "results.json").write_text(json.dumps(results))
    if error is not None:
        (job / "error.txt").write_text(error)
    return job


def _subdir(num: int, override_dirname: str) -> str:
    """``hydra.sweep.subdir`` of ``conf/hydra/default.yaml`` for a job, as Hydra resolves it."""
    from prune.run.run_names import safe_dirname  # noqa: F401  (registers the resolver)

    hydra = OmegaConf.load(ROOT / "conf" / "hydra" / "default.yaml")
    hydra.job.num, hydra.job.override_dirname = num, override_dirname
    return str(OmegaConf.create({"hydra": hydra}).hydra.sweep.subdir)


def test_sweep_job_folder_is_one_safe_readable_name():
    from prune.run.run_names import MAX_BYTES, safe_dirname

    name = _subdir(3, "data.path=/tmp/x/a.npz,seed=1")
    assert name == "3_data.path=_tmp_x_a.npz,seed=1"
    assert _subdir(0, "x=" + "a" * 400) == "0_" + safe_dirname("x=" + "a" * 400)
    assert safe_dirname("data.path=/tmp/x/a.npz,seed=1") == "data.path=_tmp_x_a.npz,seed=1"
    assert safe_dirname("pruner.ratio=0.5") == "pruner.ratio=0.5"  # safe names stay as they are
    assert safe_dirname("") == ""
    odd = safe_dirname(f"a={UNSAFE}\n")
    assert not set(UNSAFE + "\n") & set(odd) and odd.startswith("a=")
    assert safe_dirname(".hidden")[0] == safe_dirname("-option")[0] == "_"
    long_a, long_b = "x=" + "é" * 300 + "a", "x=" + "é" * 300 + "b"
    assert safe_dirname(long_a) != safe_dirname(long_b)  # cut, but still apart
    for name in (long_a, long_b):
        assert len(safe_dirname(name).encode()) <= MAX_BYTES
        assert safe_dirname(name).startswith("x=éé")
        safe_dirname(name).encode().decode()  # not cut inside a character


def _npz(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True)
    y = np.arange(200) % 4  # every class present
    np.savez(path, x=rng.integers(0, 256, (200, 8, 8), dtype=np.uint8), y=y)
    return path


@pytest.mark.slow
def test_multirun_over_paths_gives_flat_job_folders_and_a_complete_summary(tmp_path):
    a, b = _npz(tmp_path / "a" / "x.npz", 0), _npz(tmp_path / "b" / "x.npz", 1)
    sweep = tmp_path / "sweep"
    overrides = [o for o in TINY_BASE if not o.startswith("data=")]
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        *overrides,
        "model.net.hidden=[24,12]",  # 36 units; keep 16 of them: 20/36 removed
        "data=npz",
        f"data.path={a},{b}",
        "pruner=lrp",
        "pruner.keep=16",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name[:2] for p in jobs] == ["0_", "1_"], [p.name for p in jobs]
    for job, data in zip(jobs, (a, b), strict=True):
        assert len(job.name.encode()) <= 255
        assert "data.path=" in job.name
        res = json.loads((job / "results.json").read_text())  # directly in the job folder
        assert res["status"] == "complete" and res["data"]["source"].endswith(f"({data})")
        assert res["final"]["kept"]["units_kept"] == 16
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == [p.name for p in jobs]
    assert [r["status"] for r in rows] == ["complete", "complete"]
    for row in rows:
        assert row["keep"] == "16" and row["ratio_config"] == ""
        assert float(row["ratio"]) == pytest.approx(20 / 36, abs=1e-6)


def test_summary_names_each_jobs_real_reason(tmp_path):
    _job(tmp_path, "0_ok", _results())
    _job(tmp_path, "1_bad", error="ConfigError: pruner.ratio must be in [0, 1), got 1.5\n")
    _job(tmp_path, "2_failed_later", _results("running"), "RuntimeError: CUDA out of memory\n")
    _job(tmp_path, "3_error_in_results", {"status": "failed", "error": "boom", "config": {}})
    stopped = _results("running")
    stopped["rounds"] = stopped["rounds"][:2]  # killed in round 2
    _job(tmp_path, "4_stopped", stopped)
    _job(tmp_path, "5_empty")
    started = _job(tmp_path, "6_started")
    (started / ".hydra").mkdir()
    (started / "train.log").write_text("")
    # failed once, then completed when run again in its folder: the old error.txt is stale
    rerun = _job(tmp_path, "7_rerun", error="RuntimeError: simulated interruption\n")
    past = time.time() - 60
    os.utime(rerun / "error.txt", (past, past))
    (rerun / "results.json").write_text(json.dumps(_results()))
    # a sweep made before the fix: a path value nested the job folder at every "/"
    _job(tmp_path, "8_data.path=/tmp/a/x.npz", _results())
    _job(tmp_path, "9_unreadable").joinpath("results.json").write_text('{"status": ')

    status = {r["job"]: r["status"] for r in summarize(tmp_path)}
    assert status["0_ok"] == status["7_rerun"] == "complete"
    assert status["1_bad"] == "failed: ConfigError: pruner.ratio must be in [0, 1), got 1.5"
    assert status["2_failed_later"] == "failed: RuntimeError: CUDA out of memory"
    assert status["3_error_in_results"] == "failed: boom"
    assert status["4_stopped"].startswith("incomplete: results.json stops after round 1 of 3")
    for name in ("5_empty", "6_started"):  # no reason is known: none is made up
        assert status[name].startswith("no results.json") and "fail" not in status[name]
    assert "see train.log" in status["6_started"]
    assert status["8_data.path=/tmp/a/x.npz"] == "complete"
    assert status["9_unreadable"].startswith("failed: unreadable results.json")
    assert len(status) == 10


def test_ratio_column_is_the_realised_ratio_when_keep_sets_the_size(tmp_path):
    _job(tmp_path, "0_keep", _results())
    dense = {"status": "complete", "config": {"seed": 1}, "final": {"round": 0, "test/acc": 0.9}}
    _job(tmp_path, "1_dense", dense)
    by_ratio = _results()
    by_ratio["config"]["pruner"].update(keep=None, ratio=0.75)
    _job(tmp_path, "2_ratio", by_ratio)
    rows = {r["job"]: r for r in summarize(tmp_path)}
    assert rows["0_keep"]["ratio"] == 0.75 and rows["0_keep"]["keep"] == 9
    assert rows["0_keep"]["ratio_config"] is None  # keep replaced pruner.ratio
    assert rows["1_dense"]["ratio"] == 0.0
    assert rows["2_ratio"]["ratio"] == rows["2_ratio"]["ratio_config"] == 0.75
    csv_path, _ = write_summary(tmp_path)
    with csv_path.open() as f:
        keep = next(r for r in csv.DictReader(f) if r["job"] == "0_keep")
    assert keep["ratio"] == "0.75" and keep["ratio_config"] == ""
    assert keep["test/acc"] == "0.123457" and keep["cost/flops"] == "1216"  # 6 digits
