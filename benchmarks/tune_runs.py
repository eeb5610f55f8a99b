"""Record composite searches (one ``tune.py`` folder per seed) for the results page.

    python benchmarks/tune_runs.py logs/tune_vit/mnist_heads_s* --run mnist_heads \\
        --made-by "python tune.py +experiment=mnist_vit_fewshot seed=S ... \\
            hydra.run.dir=logs/tune_vit/mnist_heads_sS"

Reads each folder's ``tune_results.json`` (a finished search: the default and the best
composite, each measured once on the test split) and writes, per seed, both composites' test and
validation AUC, the best one's rules and the search's size and wall time, with the mean, std and
per-seed values of each AUC and of the paired difference (best minus default), into
``benchmarks/summaries/tuning.json`` for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from summary import SUMMARIES, mean_std, write_run

#: the AUCs recorded of each composite
AUCS = ("test/auc_pruned", "val/auc_pruned")


def read_search(folder: Path) -> dict[str, Any]:
    """One finished search: its seed, objective, both composites and its wall time.

    Raises:
        ValueError: the search did not finish (no test AUC of the best composite).
    """
    res = json.loads((folder / "tune_results.json").read_text())
    best, default = res.get("best") or {}, res.get("default") or {}
    if res.get("status") != "complete" or "test/auc_pruned" not in best:
        raise ValueError(f"{folder}/tune_results.json: the search has not finished")
    objective = res.get("objective") or {}
    return {
        "seed": (res.get("config") or {}).get("seed"),
        "target": objective.get("target"),
        "data": (res.get("data") or {}).get("source", "").split(" (")[0],
        "val_images": objective.get("val_images"),
        "test_images": objective.get("test_images"),
        "trials": sum(t.get("value") is not None for t in res.get("trials") or []),
        "failed": sum(t.get("value") is None for t in res.get("trials") or []),
        "best_trial": best.get("trial"),
        "best_params": best.get("params"),
        "default_params": default.get("params"),
        "best": {k: best.get(k) for k in AUCS},
        "default": {k: default.get(k) for k in AUCS},
        "checkpoint": (res.get("dense") or {}).get("checkpoint"),
        "wall_s": res.get("wall_s"),
    }


def _aucs(searches: list[dict[str, Any]], composite: str) -> dict[str, Any]:
    """Mean, std and per-seed values of each AUC that every search recorded of ``composite``."""
    return {
        k: mean_std([s[composite][k] for s in searches])
        for k in AUCS
        if all(s[composite][k] is not None for s in searches)
    }


def figures_of(searches: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's figures: per composite and AUC mean, std and per-seed values; the paired
    test difference; each seed's search."""
    first = searches[0]
    return {
        "target": first["target"],
        "data": first["data"],
        "seeds": [s["seed"] for s in searches],
        "val_images": first["val_images"],
        "test_images": first["test_images"],
        "default": _aucs(searches, "default"),
        "best": _aucs(searches, "best"),
        "best_minus_default": mean_std(
            [s["best"]["test/auc_pruned"] - s["default"]["test/auc_pruned"] for s in searches]
        ),
        "searches": [
            {k: s[k] for k in ("seed", "trials", "failed", "best_trial", "best_params", "wall_s")}
            for s in searches
        ],
        "default_params": first["default_params"],
    }


def main(argv: list[str] | None = None) -> int:
    """Summarise the folders and record them as one run of ``tuning``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="tune.py folders, one per seed")
    parser.add_argument("--run", required=True, help="the run's name in the summary file")
    parser.add_argument("--made-by", action="append", default=[], help="a command that ran them")
    parser.add_argument("--summary", type=Path, default=SUMMARIES / "tuning.json")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / "tune_results.json").is_file()]
    if missing:
        print(f"error: no tune_results.json in {missing}", file=sys.stderr)
        return 2
    try:
        searches = [read_search(f) for f in args.folders]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kinds = {(s["target"], s["data"], s["val_images"]) for s in searches}
    if len(kinds) > 1:
        print(f"error: the searches differ in target, data or val images: {kinds}", file=sys.stderr)
        return 2
    folders = [str(f) for f in args.folders]
    this = shlex.join(["python", "benchmarks/tune_runs.py", *folders, "--run", args.run])
    write_run(args.summary, "tuning", args.run, [*args.made_by, this], figures_of(searches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
