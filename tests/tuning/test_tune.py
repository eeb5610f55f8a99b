"""tune.py end to end, tiny: a search on a small ViT measured on the validation split, the
test split read only afterwards; bad values refused with one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import prune.tuning.tune as tuning
from prune.run.build import build_datamodule
from prune.run.entry import run
from prune.run.rounds import train
from prune.tuning import GroupRules
from tests.conftest import TINY_VIT, compose_cfg, with_output
from tests.reliability.helpers import ROOT, child_env

#: a few-shot run of a few seconds: small synthetic data, a 2-block ViT of width 16, 3 steps
TINY_FEWSHOT = [
    "+experiment=mnist_vit_fewshot",
    *TINY_VIT,
    "pruner.rounds=3",
    "pruner.ratio=0.75",
]
TINY = [*TINY_FEWSHOT, "tune.n_trials=2"]


def test_a_two_trial_search_is_measured_on_the_validation_split(tmp_path, monkeypatch) -> None:
    pytest.importorskip("optuna")
    seen = []  # (images each pruning curve was measured on, its area), in order
    pruning_curve = tuning.pruning_curve

    def spy(*args, **kwargs):
        curve = pruning_curve(*args, **kwargs)
        seen.append((torch.cat([x for x, _ in args[4]]), curve.area))
        return curve

    monkeypatch.setattr(tuning, "pruning_curve", spy)
    cfg = with_output(compose_cfg("tune", TINY), tmp_path)
    results = tuning.tune(cfg)

    saved = json.loads((tmp_path / "tune_results.json").read_text())
    assert saved["status"] == "complete" and saved["objective"]["split"] == "val"
    assert [t["number"] for t in saved["trials"]] == [0, 1]
    assert saved["groups"]["fixed"] == {"patch_embed": tuning.BEFORE_UNITS}
    assert set(saved["groups"]["searched"]) == {"attention", "mlp", "head"}
    assert saved["trials"][0]["params"] == saved["default"]["params"]  # the first is the default

    dm = build_datamodule(cfg)
    val, test = dm.val_set.x, dm.test_set.x
    # two trials on the validation split, then the best and the default on the test split
    assert [len(x) for x, _ in seen] == [len(val), len(val), len(test), len(test)]
    assert all(torch.equal(x, val) for x, _ in seen[:2])
    assert all(torch.equal(x, test) for x, _ in seen[2:])
    assert [area for _, area in seen[:2]] == [t["value"] for t in saved["trials"]]
    best = max(saved["trials"], key=lambda t: t["value"])
    assert saved["best"]["val/auc_pruned"] == best["value"]
    assert saved["best"]["test/auc_pruned"] == seen[2][1]
    assert saved["default"]["val/auc_pruned"] == saved["trials"][0]["value"]
    assert saved["default"]["test/auc_pruned"] == seen[3][1]
    curve = saved["best"]["test/curve"]
    assert curve["ratio"] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert all(0.0 <= a <= 1.0 for a in curve["acc"])
    assert results["best"]["params"] == best["params"]
    tuned = instantiate(OmegaConf.load(tmp_path / "tuned_lrp.yaml"))  # the best, as an lrp config
    assert isinstance(tuned, GroupRules) and set(tuned.rules) == {"attention", "mlp", "head"}


def test_the_default_composite_reproduces_the_training_runs_curve(tmp_path) -> None:
    pytest.importorskip("optuna")
    train_cfg = with_output(compose_cfg("train", TINY_FEWSHOT), tmp_path / "train")
    trained = train(train_cfg)
    dense = trained["rounds"][0]["checkpoint"]  # the weights its rounds pruned
    overrides = [*TINY, "tune.n_trials=1", f"tune.checkpoint={dense}"]
    results = tuning.tune(with_output(compose_cfg("tune", overrides), tmp_path / "tune"))
    assert results["dense"]["checkpoint"] == dense
    curve = results["default"]["test/curve"]
    assert curve["acc"] == pytest.approx(
        [trained["rounds"][0]["test/acc"]] + [r["test/acc_pruned"] for r in trained["rounds"][1:]]
    )
    assert curve["ratio"] == pytest.approx(
        [0.0] + [r["prune/ratio"] for r in trained["rounds"][1:]]
    )
    assert results["default"]["test/auc_pruned"] == pytest.approx(trained["prune/auc_pruned"])


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("tune.n_trials=0", ["tune.n_trials", "integer >= 1", "got 0"]),
        ("tune.target=units", ["tune.target", "'heads', 'neurons'", "got 'units'"]),
        ("lrp=epsilon", ["lrp._target_", "attnlrp or cp_lrp"]),
        ("pruner=magnitude", ["MagnitudeCriterion", "pruner=lrp_conserved"]),
    ],
)
def test_bad_values_are_refused_with_one_line_before_any_work(
    capsys, tmp_path, override, words
) -> None:
    cfg = with_output(compose_cfg("tune", [*TINY, override]), tmp_path / "run")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(tuning.tune, cfg)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("error: ") == 1, captured
    line = captured.err.strip()
    assert len(line.splitlines()) == 1 and all(w in line for w in words), line
    assert not (tmp_path / "run").exists()


def test_without_optuna_the_run_says_how_to_install_it(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    cfg = with_output(compose_cfg("tune", TINY), tmp_path / "run")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(tuning.tune, cfg)
    assert exc.value.code == 2
    assert "pip install -e .[tune]" in capsys.readouterr().err


def test_the_command_line_refuses_before_hydra_writes_the_run_folder(tmp_path) -> None:
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "tune.py"), "tune.n_trials=0", f"hydra.run.dir={run_dir}"]
    env = child_env(HYDRA_FULL_ERROR="0")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: tune.n_trials must be an integer >= 1, got 0"
    ]
    assert not run_dir.exists()  # no .hydra folder, no log
