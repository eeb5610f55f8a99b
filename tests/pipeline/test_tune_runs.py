"""benchmarks/tune_runs.py records composite searches; the results page pairs them with the
baselines of the same seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.scripts import run_script

ROOT = Path(__file__).resolve().parents[2]


def search(folder: Path, seed: int, default: float, best: float, status: str = "complete"):
    """A ``tune.py`` folder as a finished search writes it."""
    folder.mkdir(parents=True)
    params = {"attention.rule": "gamma", "attention.gamma": 0.25, "aggregate": "signed"}
    result = {
        "status": status,
        "config": {"seed": seed},
        "data": {"source": "MNIST (/somewhere/raw)"},
        "objective": {"target": "heads", "val_images": 2000, "test_images": 10000},
        "trials": [
            {"number": 0, "value": default - 0.01},
            {"number": 1, "value": None, "error": "NaN"},
            {"number": 2, "value": best - 0.01},
        ],
        "best": {"trial": 2, "params": params, "test/auc_pruned": best, "val/auc_pruned": 0.7},
        "default": {"params": {"aggregate": "unit_abs"}, "test/auc_pruned": default},
        "dense": {"checkpoint": "dense.ckpt"},
        "wall_s": 12.5,
    }
    if status != "complete":
        del result["best"]["test/auc_pruned"]
    (folder / "tune_results.json").write_text(json.dumps(result))


def tune_runs(*args: str | Path) -> subprocess.CompletedProcess:
    return run_script("benchmarks/tune_runs.py", *args)


def test_tune_runs_records_both_composites_and_their_paired_difference(tmp_path: Path):
    search(tmp_path / "s1", 1, default=0.70, best=0.75)
    search(tmp_path / "s2", 2, default=0.72, best=0.71)
    out = tmp_path / "tuning.json"
    done = tune_runs(tmp_path / "s1", tmp_path / "s2", "--run", "mnist_heads", "--summary", out)
    assert done.returncode == 0, done.stderr
    fig = json.loads(out.read_text())["runs"]["mnist_heads"]["figures"]
    assert fig["seeds"] == [1, 2]
    assert fig["data"] == "MNIST" and fig["target"] == "heads"
    assert fig["best"]["test/auc_pruned"]["values"] == [0.75, 0.71]
    assert fig["default"]["test/auc_pruned"]["values"] == [0.70, 0.72]
    assert fig["best_minus_default"]["values"] == pytest.approx([0.05, -0.01])
    assert [s["trials"] for s in fig["searches"]] == [2, 2]  # the failed trial is not counted
    assert [s["failed"] for s in fig["searches"]] == [1, 1]


def test_tune_runs_refuses_an_unfinished_search(tmp_path: Path):
    search(tmp_path / "s1", 1, default=0.70, best=0.75, status="running")
    done = tune_runs(tmp_path / "s1", "--run", "x", "--summary", tmp_path / "t.json")
    assert done.returncode == 2
    assert "has not finished" in done.stderr
    assert not (tmp_path / "t.json").exists()


def test_results_page_pairs_the_tuned_composite_with_the_baselines():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import results_vit
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    def group(values):
        return {
            "seeds": [1, 2],
            "metrics": {
                "prune/auc_pruned": {"mean": sum(values) / 2, "std": 0.0, "values": values},
                "test/acc_dense": {"mean": 0.98, "std": 0.0, "values": [0.98, 0.98]},
            },
        }

    machine = {"description": "test machine"}
    fewshot = {
        "mnist_heads": {
            "command": "python train.py -m +experiment=mnist_vit_fewshot",
            "machine": machine,
            "date": "2031-01-01",
            "figures": {
                "groups": {
                    "pruner=lrp_conserved": group([0.70, 0.72]),
                    "pruner=taylor": group([0.71, 0.70]),
                }
            },
        }
    }
    searches = {
        "mnist_heads": {
            "command": "python tune.py +experiment=mnist_vit_fewshot",
            "machine": machine,
            "date": "2031-01-02",
            "figures": {
                "seeds": [1, 2],
                "val_images": 2000,
                "test_images": 10000,
                "default": {"test/auc_pruned": {"mean": 0.71, "std": 0.01, "values": [0.7, 0.72]}},
                "best": {"test/auc_pruned": {"mean": 0.74, "std": 0.01, "values": [0.73, 0.75]}},
                "best_minus_default": {"mean": 0.03, "std": 0.0, "values": [0.03, 0.03]},
                "searches": [
                    {"seed": s, "trials": 20, "best_params": {"mlp.rule": "zplus"}} for s in (1, 2)
                ],
            },
        }
    }
    page = results_vit.vit_fewshot({"fewshot_vit": {"runs": fewshot}, "tuning": {"runs": searches}})
    assert "| LRP, tuned composite (`tune.py`) | 0.740 ± 0.010 | 2 |" in page
    assert "AttnLRP: not above Taylor in seed 1" in page
    assert "tuned composite: above every baseline in every seed (1 / 2)" in page
    assert "+0.030 / +0.030 per seed" in page
    assert "seed 1: mlp z+; seed 2: mlp z+." in page
    assert "python tune.py +experiment=mnist_vit_fewshot" in page
