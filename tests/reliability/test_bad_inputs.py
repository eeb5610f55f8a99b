"""Bad input fails early: exit status 2, one line naming key/value/allowed, nothing overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from prune.run.entry import run
from prune.run.evaluate import evaluate
from prune.run.rounds import train
from tests.conftest import FAST, compose_cfg, with_output
from tests.reliability.helpers import ROOT, TINY, TINY_BASE, TINY_PRUNE, child_env, tiny_state

SENTINEL = '{"sentinel": "earlier output"}'


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its contents."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _fail(capsys, tmp_path, overrides, config="train", fn=train) -> str:
    """Run ``fn`` on the composed config; assert exit 2, one error line, nothing overwritten."""
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    (out / "notes.txt").write_text(SENTINEL)
    before = snapshot(out)
    cfg = with_output(compose_cfg(config, overrides), out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(fn, cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert snapshot(out) == before  # earlier output untouched, nothing new written
    assert not (out / "checkpoints").exists()  # no training started
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints and data files, good and bad."""
    d = tmp_path_factory.mktemp("files")
    torch.save(tiny_state((8,)), d / "other_model.ckpt")
    good = d / "good.ckpt"
    torch.save(tiny_state((24, 12)), good)
    (d / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    raw = bytearray(good.read_bytes())
    raw[-300:] = b"\xff" * 300  # corrupt the zip directory at the end
    (d / "corrupt.ckpt").write_bytes(bytes(raw))
    weights = tiny_state((24, 12))
    del weights["optimizer_states"], weights["loops"]
    torch.save(weights, d / "weights_only.ckpt")
    diverged = tiny_state((24, 12))
    next(iter(diverged["state_dict"].values())).fill_(float("nan"))
    torch.save(diverged, d / "nan.ckpt")
    torch.save({"state_dict": {}, "payload": torch.nn.Linear(2, 2)}, d / "pickled.ckpt")
    planned = tiny_state((24, 12))
    planned["pruning_plan"] = {"keep": {"features.9": [0, 1]}, "input_keep": None}
    torch.save(planned, d / "other_plan.ckpt")
    np.savez(d / "no_labels.npz", x=np.zeros((10, 8, 8), np.uint8))
    (d / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with zipfile.ZipFile(d / "empty.npz", "w"):
        pass
    return d


# (overrides added to TINY_PRUNE, substrings the error line must contain)
CONFIG_CASES = [
    (["pruner.ratio=1.0"], ["pruner.ratio", "1.0", "[0, 1)"]),
    (["pruner.ratio=-0.2"], ["pruner.ratio", "-0.2", "[0, 1)"]),
    (["pruner.keep=0"], ["pruner.keep", "0", ">= 1"]),
    (["pruner.keep=2.5"], ["pruner.keep", "2.5", "integer"]),
    (["pruner.target=inputs", "pruner.keep=785"], ["pruner.keep", "785", "<= 784"]),
    (["pruner.keep=100000"], ["pruner.keep", "100000", "<= 36"]),
    (["pruner.rounds=0"], ["pruner.rounds", "0", ">= 1"]),
    (["pruner.min_width=0"], ["pruner.min_width", ">= 1"]),
    (["pruner.schedule=linear"], ["pruner.schedule", "'linear'", "constant", "geometric"]),
    (["pruner.target=weights"], ["pruner.target", "'weights'", "units", "inputs"]),
    (["pruner=variance", "pruner.target=units"], ["pruner.target", "VarianceCriterion"]),
    (
        ["pruner.target=heads_and_neurons"],
        ["pruner.global_ranking=true", "heads against neurons", "global_ranking=false"],
    ),
    (
        ["pruner.criterion._target_=prune.pruning.criteria.Nope"],
        ["pruner.criterion._target_", "Nope", "lrp"],
    ),
    (["model.net._target_=prune.models.Nope"], ["model.net._target_", "Nope", "mlp", "lenet5"]),
    (["data._target_=prune.data.Nope"], ["data._target_", "Nope", "synthetic"]),
    (["lrp._target_=prune.lrp.composites.Nope"], ["lrp._target_", "Nope", "epsilon"]),
    (["~lrp"], ["LRPCriterion", "relevance", "lrp=null"]),
    (
        ["pruner.target=inputs", "pruner.keep=16", "lrp=epsilon_plus_flat"],
        ["flat", "pruner.target='inputs'"],
    ),
    (["lrp.epsilon=-1"], ["lrp.epsilon", "-1", ">= 0"]),
    (["trainer.max_epochs=-1"], ["trainer.max_epochs", "-1", ">= 0"]),
    (["retrain.max_epochs=-2"], ["retrain.max_epochs", "-2", ">= 0"]),
    (["data.batch_size=0"], ["data.batch_size", "0", ">= 1"]),
    (["data.batch_size=-8"], ["data.batch_size", "-8", ">= 1"]),
    (["data.eval_batch_size=0"], ["data.eval_batch_size", "0", ">= 1"]),
    (["data.val_size=-1"], ["data.val_size", "-1"]),
    (["data.relevance_fraction=1.5"], ["data.relevance_fraction", "1.5", "(0, 1]"]),
    (["data.relevance_per_class=100000"], ["data.relevance_per_class=100000", "only"]),
    (["data.relevance_set=test"], ["data.relevance_set", "'test'", "train", "val"]),
    (["relevance.target=random"], ["relevance.target", "'random'", "label", "prediction"]),
    (["relevance.output=two"], ["relevance.output", "'two'", "logit"]),
    (["pruner=lrp", "pruner.criterion.aggregate=max"], ["aggregate", "'max'", "unit_abs"]),
    (["lrp=abslrp", "relevance.output=margin"], ["relevance.output", "'margin'", "abslrp"]),
    (["trainer.precision=8-bit"], ["trainer.precision", "8-bit", "bf16-mixed"]),
    (["trainer.accelerator=quantum"], ["trainer.accelerator", "quantum", "cpu"]),
    (["trainer.devices=0"], ["trainer.devices", "0"]),
    (["trainer.limit_train_batches=1.5"], ["trainer.limit_train_batches", "1.5"]),
    (["seed=abc"], ["seed", "'abc'", "integer"]),
    (["measure.latency_batches=[0]"], ["measure.latency_batches", "[0]", ">= 1"]),
    (["measure.latency_devices=[tpu]"], ["measure.latency_devices", "tpu", "cuda"]),
    pytest.param(
        ["measure.latency_devices=[cpu,cuda]"],
        ["measure.latency_devices", "'cuda'", "no GPU"],
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there"),
    ),
    (["model.optimizer.lr=0"], ["model.optimizer.lr", "0", "> 0"]),
    (["+model.optimizer.lrr=0.1"], ["model.optimizer.lrr", "not an argument", "it takes", "lr"]),
    (
        [
            "model.scheduler={_target_:torch.optim.lr_scheduler.OneCycleLR,_partial_:true,"
            "max_lr:0.1,T_max:3}"
        ],
        ["model.scheduler.T_max", "not an argument of torch.optim.lr_scheduler.OneCycleLR"],
    ),
    (
        ["retrain.scheduler={_target_:torch.optim.SGD,_partial_:true}"],
        ["retrain.scheduler._target_", "torch.optim.SGD", "not a learning-rate scheduler"],
    ),
    (["+model.net.width=3"], ["model.net.width", "not an argument of prune.models.mlp.MLP"]),
    (["model.net.hidden=[0]"], ["model.net.hidden", "[0]", ">= 1"]),
    (["ckpt_path=/no/such/file.ckpt"], ["ckpt_path", "/no/such/file.ckpt", "does not exist"]),
    (
        [
            "data=mnist",
            "data.root=/no/such/root",
            "data.allow_fallback=false",
            "data.download=false",
        ],
        ["data.root", "/no/such/root", "allow_fallback=false"],
    ),
    (
        ["data=npz", "data.path=/no/such/file.npz"],
        ["data.path", "/no/such/file.npz", "does not exist"],
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), CONFIG_CASES, ids=lambda v: str(v)[:60])
def test_bad_config_value(capsys, tmp_path, overrides, expected):
    other_data = any(o.startswith("data=") for o in overrides)  # no synthetic-only keys
    base = [*TINY_BASE, "pruner=lrp"] if other_data else TINY_PRUNE
    line = _fail(capsys, tmp_path, [*base, *overrides])
    for text in expected:
        assert text in line, (text, line)


def test_input_pruning_of_a_model_it_cannot_apply_to(capsys, tmp_path):
    target = "model.net._target_=tests.reliability.helpers.GlobalPoolNet"
    overrides = [*TINY_PRUNE, "~model.net.hidden", "~model.net.dropout", target]
    line = _fail(capsys, tmp_path, [*overrides, "pruner.target=inputs", "pruner.keep=16"])
    assert "pruner.target='inputs'" in line and "GlobalPoolNet" in line and "pool" in line


def test_attention_map_method_on_a_model_without_attention(capsys, tmp_path):
    overrides = [*FAST, "+experiment=mnist_removal", "explanations.methods=[attention_rollout]"]
    line = _fail(capsys, tmp_path, overrides)
    assert "explanations.methods" in line and "Vision Transformer" in line and "MLP" in line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("no_labels.npz", ["data.path", "lacks arrays", "'y'"]),
        ("broken.npz", ["data.path", "not a readable .npz"]),
        ("empty.npz", ["data.path", "lacks arrays", "'x'"]),
    ],
)
def test_bad_data_file(capsys, tmp_path, files, name, expected):
    line = _fail(capsys, tmp_path, [*TINY_BASE, "data=npz", f"data.path={files / name}"])
    for text in expected:
        assert text in line, (text, line)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("truncated.ckpt", ["ckpt_path", "could not be loaded safely", "weights_only=True"]),
        ("corrupt.ckpt", ["ckpt_path", "could not be loaded safely"]),
        ("pickled.ckpt", ["ckpt_path", "could not be loaded safely", "weights_only=True"]),
        ("other_model.ckpt", ["ckpt_path", "holds another model", "layers.0.weight"]),
        ("other_plan.ckpt", ["ckpt_path", "another pruning plan"]),
        ("weights_only.ckpt", ["ckpt_path", "cannot resume training", "optimizer_states"]),
    ],
)
def test_bad_checkpoint_to_train_from(capsys, tmp_path, files, name, expected):
    line = _fail(capsys, tmp_path, [*TINY, f"ckpt_path={files / name}"])
    for text in expected:
        assert text in line, (text, line)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing.ckpt", ["dense_ckpt", "does not exist"]),
        ("pickled.ckpt", ["dense_ckpt", "could not be loaded safely", "weights_only=True"]),
        ("other_model.ckpt", ["dense_ckpt", "holds another model", "layers.0.weight"]),
        ("other_plan.ckpt", ["dense_ckpt", "another pruning plan"]),
        ("nan.ckpt", ["dense_ckpt", "NaN/infinite weights"]),
    ],
)
def test_bad_dense_checkpoint(capsys, tmp_path, files, name, expected):
    line = _fail(capsys, tmp_path, [*TINY, f"dense_ckpt={files / name}"])
    for text in expected:
        assert text in line, (text, line)


def test_dense_checkpoint_and_resumed_training_are_exclusive(capsys, tmp_path, files):
    both = [f"dense_ckpt={files / 'weights_only.ckpt'}", f"ckpt_path={files / 'good.ckpt'}"]
    line = _fail(capsys, tmp_path, [*TINY, *both])
    assert "ckpt_path" in line and "dense_ckpt" in line and "set one of them" in line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, ["ckpt_path is required"]),
        ("missing.ckpt", ["ckpt_path", "does not exist"]),
        ("truncated.ckpt", ["ckpt_path", "could not be loaded safely"]),
        ("pickled.ckpt", ["could not be loaded safely", "weights_only=True"]),
        ("other_model.ckpt", ["ckpt_path", "does not fit model"]),
        ("other_plan.ckpt", ["features.9"]),
    ],
)
def test_bad_checkpoint_to_evaluate(capsys, tmp_path, files, name, expected):
    overrides = [*FAST, "~logger", "measure.latency_batches=[1]", "use_checkpoint_config=false"]
    if name is not None:
        overrides.append(f"ckpt_path={files / name}")
    line = _fail(capsys, tmp_path, overrides, config="evaluate", fn=evaluate)
    for text in expected:
        assert text in line, (text, line)


def test_resume_with_another_config_is_refused(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    earlier = {"status": "running", "config": {"seed": 7}, "rounds": []}
    (tmp_path / "run" / "results.json").write_text(json.dumps(earlier))
    line = _fail(capsys, tmp_path, [*TINY_PRUNE, "resume=true"])
    assert "resume=true" in line and "was made with" in line


def _cli(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = child_env(HYDRA_FULL_ERROR="0")
    cmd = [
        sys.executable,
        str(ROOT / script),
        *args,
        f"hydra.run.dir={cwd}",
        f"paths.log_dir={cwd}",
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_command_line_bad_value_exits_2_with_one_line(tmp_path):
    (tmp_path / "results.json").write_text(SENTINEL)
    proc = _cli("train.py", "data=synthetic", "pruner=lrp", "pruner.ratio=1.5", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "error: pruner.ratio must be in [0, 1) (fraction removed), got 1.5", lines
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "results.json").read_text() == SENTINEL


@pytest.mark.slow
def test_command_line_unsafe_checkpoint_exits_2(tmp_path, files):
    proc = _cli("evaluate.py", f"ckpt_path={files / 'pickled.ckpt'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ckpt_path=")
    assert "weights_only=True" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_command_line_unknown_model_name_lists_options(tmp_path):
    proc = _cli("train.py", "model=nope", cwd=tmp_path)
    assert proc.returncode != 0
    assert "model/nope" in proc.stderr and "lenet5" in proc.stderr and "mlp" in proc.stderr
    assert "Traceback" not in proc.stderr
