"""Record explanation evaluations (one ``evaluate.py`` folder per seed) for the results page.

    python benchmarks/explanation_runs.py logs/vit_explanations/mnist_s* --run vit_mnist \\
        --label "ViT, MNIST" \\
        --made-by "python evaluate.py +experiment=mnist_vit_removal ckpt_path=... \\
            hydra.run.dir=logs/vit_explanations/mnist_sS"

Reads each folder's ``evaluation.json`` (feature removal, pixel flipping and GAE per method, on
the same test images) and writes per method and metric the mean, std and per-seed values into
``benchmarks/summaries/explanations.json`` for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from summary import SUMMARIES, mean_std, write_run

#: the metrics the page shows, of those every evaluation has
METRICS = (
    "removal/acc_kept",
    "removal/acc_removed",
    "flip/aopc_morf",
    "gae/faithfulness",
    "gae/robustness",
    "gae/contrastiveness",
    "gae/gae",
)


def read_evaluation(folder: Path) -> dict[str, Any]:
    """The seed, image count, original accuracy, wall time and per-method table of a folder."""
    res = json.loads((folder / "evaluation.json").read_text())
    ex = res.get("explanations") or {}
    if not ex.get("table"):
        raise ValueError(f"{folder}/evaluation.json has no explanation table")
    return {
        "seed": res.get("model_seed"),
        "checkpoint": res.get("checkpoint"),
        "images": (ex.get("config") or {}).get("num_samples"),
        "gae_samples": (ex.get("config") or {}).get("gae_samples"),
        "acc_original": (ex.get("original") or {}).get("acc"),
        "wall_s": res.get("wall_s"),
        "table": ex["table"],
    }


def main(argv: list[str] | None = None) -> int:
    """Summarise the folders and record them as one run of ``explanations``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="evaluate.py folders, one per seed")
    parser.add_argument("--run", required=True, help="the run's name in the summary file")
    parser.add_argument("--label", required=True, help="the model and data, as the page shows")
    parser.add_argument("--made-by", action="append", default=[], help="a command that ran them")
    parser.add_argument("--summary", type=Path, default=SUMMARIES / "explanations.json")
    parser.add_argument(
        "--seeds",
        default=None,
        help="the models' training seeds, comma-separated in folder order (default: each "
        "evaluation.json's model_seed)",
    )
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / "evaluation.json").is_file()]
    if missing:
        print(f"error: no evaluation.json in {missing}", file=sys.stderr)
        return 2
    runs = [read_evaluation(f) for f in args.folders]
    if args.seeds is not None:
        seeds = args.seeds.split(",")
        if len(seeds) != len(runs):
            print(f"error: {len(seeds)} --seeds for {len(runs)} folders", file=sys.stderr)
            return 2
        for run, seed in zip(runs, seeds, strict=True):
            run["seed"] = int(seed)
    methods = list(runs[0]["table"])
    if any(list(r["table"]) != methods for r in runs):
        print("error: the evaluations explain different methods", file=sys.stderr)
        return 2
    figures = {
        "model": args.label,
        "seeds": [r["seed"] for r in runs],
        "images": runs[0]["images"],
        "gae_samples": runs[0]["gae_samples"],
        "acc_original": mean_std([r["acc_original"] for r in runs]),
        "wall_s": [r["wall_s"] for r in runs if r["wall_s"] is not None],
        "methods": {
            m: {
                k: mean_std([r["table"][m][k] for r in runs])
                for k in METRICS
                if all(k in r["table"][m] for r in runs)
            }
            for m in methods
        },
    }
    given = sys.argv[1:] if argv is None else argv
    this = shlex.join(["python", "benchmarks/explanation_runs.py", *given])
    command = [*args.made_by, this]
    write_run(args.summary, "explanations", args.run, command, figures, label=args.label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
