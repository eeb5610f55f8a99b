"""A checkpoint's stored config is data, never code; every checkpoint is loaded as data only."""

from __future__ import annotations

import copy
import functools
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf, open_dict

from prune.run.build import make_trainer
from prune.run.checkpoint import SafeCheckpointIO
from prune.run.entry import run
from prune.run.evaluate import evaluate
from prune.run.rounds import train
from prune.run.stored_config import check_stored_config, registered_targets
from tests.conftest import FAST, compose_cfg, with_output
from tests.reliability.helpers import ROOT, TINY, child_env, tiny_state
from tests.reliability.test_bad_inputs import snapshot

#: callables that write files or run programs when a config names them as a ``_target_``
HOSTILE = {
    "numpy.savetxt": {"fname": "{victim}", "X": [[0]]},
    "builtins.open": {"file": "{victim}", "mode": "w"},
    "os.system": {"_args_": ["touch {victim}"]},
    "subprocess.run": {"args": ["touch", "{victim}"]},
}
#: where in a stored config the target is put (a key path into run_config)
SECTIONS = [
    ("data",),
    ("model",),
    ("model", "net"),
    ("model", "optimizer"),
    ("model", "scheduler"),
    ("callbacks", "model_checkpoint"),
    ("trainer",),
    ("logger",),
]


@functools.cache
def _composed() -> dict:
    return OmegaConf.to_container(compose_cfg("train", TINY), resolve=True)


def _good_config() -> dict:
    """A real run's stored config (a fresh copy)."""
    return copy.deepcopy(_composed())


@functools.cache
def _evaluate_cfg() -> DictConfig:
    return compose_cfg("evaluate", [*FAST, "~logger", "measure.latency_batches=[1]"])


def _poisoned(target: str, section: tuple[str, ...], victim: Path) -> dict:
    config = _good_config()
    node = config
    for key in section[:-1]:
        node = node.setdefault(key, {})

    def fill(value):
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.format(victim=victim) if isinstance(value, str) else value

    node[section[-1]] = {"_target_": target, **{k: fill(v) for k, v in HOSTILE[target].items()}}
    return config


def _evaluate_fails(capsys, tmp_path: Path, ckpt: Path, victim: Path) -> str:
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("earlier output")
    before = snapshot(out)
    cfg = with_output(_evaluate_cfg(), out)
    with open_dict(cfg):
        cfg.ckpt_path = str(ckpt)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(evaluate, cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not victim.exists()  # the hostile target never ran
    assert snapshot(out) == before  # nothing written
    return lines[0]


@pytest.mark.parametrize("section", SECTIONS, ids=".".join)
@pytest.mark.parametrize("target", sorted(HOSTILE))
def test_evaluate_refuses_a_stored_config_naming_a_hostile_target(
    capsys, tmp_path, target, section
):
    victim = tmp_path / "victim"
    ckpt = tmp_path / "poisoned.ckpt"
    state = tiny_state((24, 12))
    state["run_config"] = _poisoned(target, section, victim)
    torch.save(state, ckpt)
    line = _evaluate_fails(capsys, tmp_path, ckpt, victim)
    assert target in line and "refusing" in line, line


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${oc.env:HOME}", "interpolation"),
        ({"_target_": "prune.models.MLP", "_args_": [1]}, "_args_"),
        ({"_target_": "antigravity.fly"}, "antigravity"),
        ({"_target_": "prune.models.__builtins__"}, "refusing"),
        ({"_target_": "torch.optim.lr_scheduler.os.system"}, "refusing"),
    ],
)
def test_stored_config_refuses_interpolations_special_keys_and_unknown_modules(value, expected):
    config = _good_config()
    config["model"]["net"]["extra"] = value
    with pytest.raises(ValueError, match="refusing|interpolation") as exc:
        check_stored_config(config, "ckpt_path", "x.ckpt")
    assert expected in str(exc.value)


def test_every_registered_target_of_the_project_configs_is_allowed():
    check_stored_config(_good_config(), "ckpt_path", "x.ckpt")  # a real run's config passes
    assert "prune.models.MLP" in registered_targets()
    assert not any(t.startswith(("os.", "builtins.", "subprocess.")) for t in registered_targets())


def test_train_refuses_a_poisoned_checkpoint_to_continue_from(capsys, tmp_path):
    victim = tmp_path / "victim"
    state = tiny_state((24, 12))
    state["run_config"] = _poisoned("builtins.open", ("data",), victim)
    torch.save(state, tmp_path / "poisoned.ckpt")
    out = tmp_path / "run"
    cfg = with_output(compose_cfg("train", [*TINY, f"ckpt_path={tmp_path / 'poisoned.ckpt'}"]), out)
    with pytest.raises(SystemExit) as exc:
        run(train, cfg)
    assert exc.value.code == 2 and "builtins.open" in capsys.readouterr().err
    assert not victim.exists() and not (out / "checkpoints").exists()


class _Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do with a shell."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_lightning_loads_checkpoints_as_data_even_when_the_environment_says_otherwise(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    victim = tmp_path / "victim"
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(victim)}, path, pickle_module=pickle)
    trainer = make_trainer(with_output(compose_cfg("train", TINY), tmp_path), version=None)
    io = trainer.strategy.checkpoint_io
    assert isinstance(io, SafeCheckpointIO)
    with pytest.raises(ValueError, match="weights_only=True"):
        io.load_checkpoint(path)
    assert not victim.exists()


@pytest.mark.slow
def test_command_line_evaluate_of_a_poisoned_checkpoint_writes_nothing(tmp_path):
    victim = tmp_path / "victim"
    state = tiny_state((24, 12))
    state["run_config"] = _poisoned("numpy.savetxt", ("model", "optimizer"), victim)
    torch.save(state, tmp_path / "poisoned.ckpt")
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        str(ROOT / "evaluate.py"),
        f"ckpt_path={tmp_path / 'poisoned.ckpt'}",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("error: ") == 1 and "numpy.savetxt" in proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert not victim.exists() and not out.exists()  # not even Hydra's .hydra/ folder


# -- a generated battery of malformed checkpoints ------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=8))
_targets = st.sampled_from([*HOSTILE, "prune.models.MLP", "torch.optim.SGD", "nope.Nope", ""])
_nodes = st.recursive(
    st.one_of(_scalars, st.builds(lambda t: {"_target_": t}, _targets)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    section=st.sampled_from(SECTIONS),
    node=_nodes,
    cut=st.one_of(st.none(), st.floats(0.0, 0.99)),
)
def test_battery_of_malformed_checkpoints_never_runs_code_nor_writes(
    capsys, tmp_path_factory, section, node, cut
):
    tmp_path = tmp_path_factory.mktemp("battery")
    victim = tmp_path / "victim"
    config = _good_config()
    parent = config
    for key in section[:-1]:
        parent = parent.setdefault(key, {})
    parent[section[-1]] = node
    state = tiny_state((24, 12))
    state["run_config"] = config
    state["state_dict"]["net.layers.0.weight"][0, 0] = float("nan")
    ckpt = tmp_path / "bad.ckpt"
    torch.save(state, ckpt)
    if cut is not None:  # a file cut short, as a kill while copying leaves it
        ckpt.write_bytes(ckpt.read_bytes()[: int(cut * ckpt.stat().st_size)])
    _evaluate_fails(capsys, tmp_path, ckpt, victim)


def test_evaluate_refuses_nan_weights(capsys, tmp_path):
    state = tiny_state((24, 12))
    state["run_config"] = _good_config()
    state["state_dict"]["net.layers.2.weight"][3, :5] = float("nan")
    torch.save(state, tmp_path / "diverged.ckpt")
    line = _evaluate_fails(capsys, tmp_path, tmp_path / "diverged.ckpt", tmp_path / "victim")
    assert "5 NaN/infinite weights" in line and "net.layers.2.weight" in line, line


def test_checkpoints_are_replaced_atomically(tmp_path, monkeypatch):
    import prune.run.checkpoint as checkpoint

    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint({"epoch": 1}, path)

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        SafeCheckpointIO().save_checkpoint({"epoch": 2}, path)
    assert SafeCheckpointIO().load_checkpoint(path) == {"epoch": 1}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left
