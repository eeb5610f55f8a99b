"""No run overwrites another; every error is one line, printed once, with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import open_dict

from prune.run.entry import one_line, run
from prune.run.evaluate import evaluate
from prune.run.rounds import train
from tests.conftest import FAST, compose_cfg, with_output
from tests.reliability.helpers import ROOT, TINY, child_env
from tests.reliability.test_bad_inputs import snapshot

EVAL = [*FAST, "~logger", "measure.latency_batches=[1]", "measure.latency_repeats=1"]


def _finished_run(folder: Path) -> None:
    """What a finished training run leaves (enough for the folder checks)."""
    (folder / "checkpoints" / "round_0").mkdir(parents=True)
    (folder / "checkpoints" / "round_0" / "last.ckpt").write_bytes(b"weights")
    (folder / "results.json").write_text(json.dumps({"status": "complete", "config": {}}))
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")


def _exits_2(capsys, fn, cfg) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(fn, cfg)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("error: ") == 1, captured  # printed once
    return captured.err.strip()


def test_train_into_a_folder_holding_a_run_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    _finished_run(out)
    before = snapshot(out)
    line = _exits_2(capsys, train, with_output(compose_cfg("train", TINY), out))
    assert "already holds results.json" in line and "resume=true" in line, line
    assert "overwrite=true" in line
    assert snapshot(out) == before


def test_train_with_overwrite_moves_the_old_run_aside_whole(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    _finished_run(out)
    before = snapshot(out)
    cfg = with_output(compose_cfg("train", [*TINY, "overwrite=true"]), out)
    assert train(cfg)["status"] == "complete"
    (aside,) = tmp_path.glob("run.replaced-*")
    assert snapshot(aside) == before  # the old run, whole and apart
    assert not (out / ".hydra").exists()  # nothing of it mixed into the new one
    assert sorted(p.name for p in (out / "checkpoints" / "round_0").iterdir()) != ["last.ckpt"]


def test_evaluate_writes_its_own_file_never_the_training_runs(capsys, tmp_path):
    run_dir = tmp_path / "run"
    res = train(with_output(compose_cfg("train", TINY), run_dir))
    results = (run_dir / "results.json").read_bytes()
    ckpt = res["rounds"][0]["checkpoint"]
    cfg = with_output(compose_cfg("evaluate", [*EVAL, f"ckpt_path={ckpt}"]), run_dir)
    evaluate(cfg)
    assert (run_dir / "results.json").read_bytes() == results
    first = (run_dir / "evaluation.json").read_bytes()
    # a second evaluation into the same folder: refused, the first one kept
    line = _exits_2(capsys, evaluate, cfg)
    assert "evaluation.json" in line and "overwrite=true" in line
    assert (run_dir / "evaluation.json").read_bytes() == first
    with open_dict(cfg):
        cfg.overwrite = True
    evaluate(cfg)
    (aside,) = run_dir.glob("evaluation.json.replaced-*")
    assert aside.read_bytes() == first
    assert (run_dir / "results.json").read_bytes() == results


def test_resume_and_overwrite_together_are_refused(capsys, tmp_path):
    cfg = with_output(compose_cfg("train", [*TINY, "resume=true", "overwrite=true"]), tmp_path)
    assert "set one of them" in _exits_2(capsys, train, cfg)


def test_hydra_messages_become_one_line_with_the_options():
    text = (
        "In 'train': Could not find 'model/nope'\n\nAvailable options in 'model':\n"
        "\tlenet5\n\tmlp\nConfig search path:\n\tprovider=hydra, path=pkg://hydra.conf"
    )
    assert one_line(text) == "In 'train': Could not find 'model/nope'; Available options in " + (
        "'model': lenet5, mlp"
    )


def _cli(*args: str, cwd: Path, script: str = "train.py") -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / script), *args]
    env = child_env(HYDRA_FULL_ERROR="0")  # what Hydra does by default must not matter
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    output = proc.stdout + proc.stderr
    assert output.count("error: ") == 1 and "Traceback" not in output, output[-2000:]
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]
    return next(line for line in proc.stderr.splitlines() if line.startswith("error: "))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=nope"], ["model/nope", "lenet5", "mlp", "vgg_small"]),
        (["trainer.max_epoch=3"], ["trainer.max_epoch", "+trainer.max_epoch=3"]),
        (["pruner.ratio=0.5"], ["pruner.ratio"]),
        (["data=synthetic", "hydra.run.dir={tmp}/file.txt/run"], ["file.txt", "Not a directory"]),
    ],
    ids=["unknown-option", "key-typo", "key-of-absent-group", "folder-under-a-file"],
)
def test_command_line_errors_are_one_line_exit_2(tmp_path, args, expected):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    args = [a.format(tmp=tmp_path) for a in args]
    if not any(a.startswith("hydra.run.dir") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    line = _one_error(_cli(*args, cwd=tmp_path))
    for text in expected:
        assert text in line, (text, line)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_command_line_train_into_a_finished_run_leaves_it_untouched(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    _finished_run(out)
    before = snapshot(out)
    line = _one_error(_cli("data=synthetic", f"hydra.run.dir={out}", cwd=tmp_path))
    assert "already holds results.json" in line
    assert snapshot(out) == before  # not even Hydra's .hydra/config.yaml was rewritten


@pytest.mark.slow
def test_command_line_sweep_into_a_finished_sweep_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0_seed=1").mkdir(parents=True)
    _finished_run(sweep / "0_seed=1")
    before = snapshot(sweep)
    args = ["-m", "data=synthetic", "seed=1,2", f"hydra.sweep.dir={sweep}"]
    line = _one_error(_cli(*args, cwd=tmp_path))
    assert "already holds results of 1 jobs" in line
    assert snapshot(sweep) == before


@pytest.mark.slow
def test_command_line_ddp_run_claims_its_folder_once(tmp_path):
    # Lightning re-runs train.py for rank 1, after rank 0 wrote results.json: rank 1 joins the
    # run rank 0 claimed instead of refusing the folder
    out = tmp_path / "run"
    args = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY,
        f"hydra.run.dir={out}",
    ]
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["status"] == "complete"
