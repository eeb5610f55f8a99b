"""A run killed anywhere and resumed ends exactly as one that was never interrupted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.helpers import ROOT, TINY_PRUNE, child_env

KILLER = Path(__file__).with_name("killed_run.py")
STEP = "prune.module:ClassifierModule.training_step"
#: 2 rounds, 2 epochs of 4 steps per fit (8 steps a fit), dropout; relevance 2 batches a pass
OVERRIDES = [
    *TINY_PRUNE,
    "pruner.rounds=2",
    "trainer.max_epochs=2",
    "retrain.max_epochs=2",
    "model.net.dropout=0.2",
    "data.eval_batch_size=16",
]
#: where to kill (method, n-th call): mid-epoch 2 of the dense fit, in the second batch of
#: round 2's relevance pass, mid-epoch 2 of round 2's retraining
KILLS = {
    "dense": (STEP, 6),
    "relevance": ("prune.callbacks.relevance:RelevanceAccumulator.on_validation_batch_start", 4),
    "retraining": (STEP, 8 + 8 + 6),
}


def _command(out: Path, *extra: str, kill: tuple[str, int] | None = None) -> list[str]:
    head = [str(KILLER), kill[0], str(kill[1])] if kill else [str(ROOT / "train.py")]
    return [sys.executable, *head, *OVERRIDES, f"hydra.run.dir={out}", *extra]


def _start(cmd: list[str]) -> subprocess.Popen:
    env = child_env(OMP_NUM_THREADS="1")
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _wait(procs: dict[str, subprocess.Popen]) -> dict[str, tuple[int, str]]:
    return {name: (p.wait(timeout=600), p.stderr.read()) for name, p in procs.items()}


def _outcome(out: Path) -> dict:
    """What must be equal: each round's plan and accuracies."""
    res = json.loads((out / "results.json").read_text())
    keys = ("round", "test/acc", "test/acc_pruned", "test/acc_dense", "plan", "kept")
    return {
        "status": res["status"],
        "rounds": [{k: r.get(k) for k in keys} for r in res["rounds"]],
        "plan": res.get("plan"),
    }


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_results(tmp_path):
    # every run in its own process, started together (the two cores share them)
    procs = {"reference": _start(_command(tmp_path / "reference"))}
    procs |= {n: _start(_command(tmp_path / n, kill=k)) for n, k in KILLS.items()}
    ends = _wait(procs)
    assert ends["reference"][0] == 0, ends["reference"][1][-2000:]
    for name in KILLS:
        assert ends[name][0] == -9, (name, ends[name][1][-2000:])  # SIGKILL, where it was armed
        assert json.loads((tmp_path / name / "results.json").read_text())["status"] == "running"
    # a copy of the killed retraining moved to another folder, its round-2 last.ckpt cut short
    # (a file damaged on disk: the pipeline's own writes are atomic), resumes too: the round's
    # fit starts again from its beginning, the damaged folder is kept aside
    shutil.copytree(tmp_path / "retraining", tmp_path / "moved")
    last = tmp_path / "moved" / "checkpoints" / "round_2" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    resumed = {n: _start(_command(tmp_path / n, "resume=true")) for n in [*KILLS, "moved"]}
    ends = _wait(resumed)
    for name, (code, err) in ends.items():
        assert code == 0, (name, err[-2000:])
    assert (tmp_path / "moved" / "checkpoints" / "round_2.unreadable" / "last.ckpt").is_file()
    reference = _outcome(tmp_path / "reference")
    assert reference["status"] == "complete" and len(reference["rounds"]) == 3
    for name in [*KILLS, "moved"]:
        assert _outcome(tmp_path / name) == reference, name
