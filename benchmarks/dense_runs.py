"""Record dense training runs (one run folder per seed) as a row of the results page.

    python benchmarks/dense_runs.py logs/vit/mnist_s* --run vit_mnist \\
        --label "ViT (conf/model/vit.yaml), MNIST" \\
        --made-by "python train.py +experiment=mnist_vit seed=S hydra.run.dir=logs/vit/mnist_sS"

Reads each folder's ``results.json`` (round 0: test accuracy, FLOPs, parameters; the run's wall
time; the seed and the epochs of its stored config) and writes them, one value per seed, into
``benchmarks/summaries/dense_models.json`` for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from summary import SUMMARIES, write_run


def read_run(folder: Path) -> dict[str, Any]:
    """The figures of one run folder's ``results.json`` (its dense round)."""
    results = json.loads((folder / "results.json").read_text())
    dense = results["rounds"][0]
    config = results.get("config") or {}
    return {
        "seed": config.get("seed"),
        "epochs": (config.get("trainer") or {}).get("max_epochs"),
        "model": dense.get("model")
        or ((config.get("model") or {}).get("net") or {}).get("_target_"),
        "test/acc": dense["test/acc"],
        "cost/flops": dense["cost/flops"],
        "cost/params": dense["cost/params"],
        "wall_s": results.get("wall_s"),
    }


def main(argv: list[str] | None = None) -> int:
    """Summarise the folders and record them as one run of ``dense_models``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, one per seed")
    parser.add_argument("--run", required=True, help="the run's name in the summary file")
    parser.add_argument("--label", required=True, help="the model and data, as the page shows")
    parser.add_argument("--made-by", action="append", default=[], help="a command that ran them")
    parser.add_argument("--summary", type=Path, default=SUMMARIES / "dense_models.json")
    parser.add_argument("--notes", default=None, help="a short remark on how the runs ran")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / "results.json").is_file()]
    if missing:
        print(f"error: no results.json in {missing}", file=sys.stderr)
        return 2
    runs = [read_run(f) for f in args.folders]
    epochs = {r["epochs"] for r in runs}
    if len(epochs) != 1:
        print(f"error: the runs trained for different epochs {sorted(epochs)}", file=sys.stderr)
        return 2
    figures = {
        "model": str(runs[0]["model"]).rsplit(".", 1)[-1],
        "epochs": epochs.pop(),
        "seeds": [r["seed"] for r in runs],
        "test/acc": [r["test/acc"] for r in runs],
        "cost/flops": runs[0]["cost/flops"],
        "cost/params": runs[0]["cost/params"],
        "wall_s": [r["wall_s"] for r in runs if r["wall_s"] is not None],
    }
    given = sys.argv[1:] if argv is None else argv
    this = shlex.join(["python", "benchmarks/dense_runs.py", *given])
    command = [*args.made_by, this]
    write_run(
        args.summary, "dense_models", args.run, command, figures, args.notes, label=args.label
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
