"""Mean ± std over seeds of several sweep folders (each with results.json per job).

    python benchmarks/summarize_sweeps.py logs/input_pruning/sweep_s*
    python benchmarks/summarize_sweeps.py logs/input_pruning/sweep_s* \\
        --summary benchmarks/summaries/input_pruning.json --run sweeps \\
        --made-by "PARALLEL=1 LRP_PRUNE_DATA=/path/to/data bash benchmarks/input_pruning_sweep.sh"

Groups jobs by everything in their folder name except the job number and seed (the sweep's
overrides, Hydra's ``override_dirname``), and prints a markdown table of test accuracy (dense,
pruned before retraining, after) and FLOPs. With ``--summary`` it also records the groups in a
summary file for ``benchmarks/make_pages.py``: per group the seeds, every metric's mean, std and
per-seed values, the loss against the dense model (``acc_drop``), and the same per round; its
commands are the ``--made-by`` commands that ran the sweeps, then this one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from summary import mean_std, write_run

from prune.run.hydra_callbacks import summarize

#: the metrics of a job's final row recorded per group
METRICS = (
    "test/acc_dense",
    "test/acc_pruned",
    "test/acc",
    "cost/flops",
    "cost/params",
    "prune/flops_ratio",
    "prune/params_ratio",
    "prune/auc_pruned",
)


def _job_results(folder: str, job: str) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / job / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def _widths(row: dict[str, Any] | None) -> dict[str, int]:
    layers = ((row or {}).get("kept") or {}).get("layers") or {}
    return {name: layer["kept"] for name, layer in layers.items()}


def _group_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One group's record: seeds, metrics and rounds, each with per-seed values."""
    first = rows[0]
    out: dict[str, Any] = {
        "n": len(rows),
        "seeds": [r.get("seed") for r in rows],
        "criterion": first.get("criterion"),
        "keep": first.get("keep"),
        "ratio_config": first.get("ratio_config"),
        "model": first.get("model"),
        "data_source": str(first.get("data_source") or "").split(" (")[0] or None,
    }
    metrics = {}
    for key in METRICS:
        if all(r.get(key) is not None for r in rows):
            metrics[key] = mean_std([r[key] for r in rows])
    if "test/acc_dense" in metrics and "test/acc" in metrics:
        metrics["acc_drop"] = mean_std([r["test/acc_dense"] - r["test/acc"] for r in rows])
    out["metrics"] = metrics
    if all(r.get("wall_s") is not None for r in rows):
        out["wall_s"] = mean_std([r["wall_s"] for r in rows])
    by_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        for point in r.get("trajectory") or []:
            by_round[point["round"]].append(point)
    rounds = {}
    for k in sorted(by_round):
        points = by_round[k]
        if len(points) != len(rows):
            continue  # a round not every seed finished
        rounds[str(k)] = {
            "test/acc": mean_std([p["acc"] for p in points]),
            "test/acc_pruned": mean_std([p["acc_pruned"] for p in points]),
            "cost/flops": mean_std([p["flops"] for p in points]),
        }
        widths = _widths(next((x for x in first["rounds"] if x.get("round") == k), None))
        if widths:
            rounds[str(k)]["widths"] = widths
    out["rounds"] = rounds
    dense = {
        name: layer.get("dense")
        for name, layer in ((first["rounds"][-1] if first["rounds"] else {}).get("kept") or {})
        .get("layers", {})
        .items()
    }
    if dense and all(v is not None for v in dense.values()):
        out["dense_widths"] = dense
    return out


def _braced(folders: Sequence[str]) -> str:
    """The folders as a shell would take them back: ``logs/a/{x,y} logs/b``."""
    by_parent: dict[str, list[str]] = {}
    for folder in folders:
        path = Path(folder)
        by_parent.setdefault(str(path.parent), []).append(path.name)
    parts = []
    for parent, names in by_parent.items():
        joined = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
        parts.append(joined if parent == "." else f"{parent}/{joined}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    """Print the table of the sweep folders given (and record it with ``--summary``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="sweep folders (default: logs/**/multiruns/*)")
    parser.add_argument(
        "--summary", type=Path, default=None, metavar="PATH", help="record the groups here"
    )
    parser.add_argument("--run", default="sweeps", help="the run's name in the summary file")
    parser.add_argument(
        "--made-by",
        action="append",
        default=[],
        metavar="COMMAND",
        help="a command that ran the sweeps, recorded before this one (repeatable)",
    )
    parser.add_argument("--notes", default=None, help="a short remark on how the jobs ran")
    args = parser.parse_args(argv)
    folders = args.folders or [str(p) for p in Path("logs").glob("**/multiruns/*")]
    groups: dict[str, list[dict]] = defaultdict(list)
    finished: list[float] = []
    for folder in folders:
        for row in summarize(folder):
            if row.get("status") != "complete":
                print(f"skipped {folder}/{row['job']}: {row.get('status')}", file=sys.stderr)
                continue
            key = re.sub(r"^\d+_", "", row["job"])
            results = _job_results(folder, row["job"])
            row["rounds"] = [r for r in results.get("rounds") or [] if isinstance(r, dict)]
            row["wall_s"] = results.get("wall_s")
            groups[key].append(row)
            path = Path(folder) / row["job"] / "results.json"
            if path.is_file():
                finished.append(path.stat().st_mtime)

    def fmt(rows: list[dict], key: str, scale: float = 100.0) -> str:
        vals = [float(r[key]) * scale for r in rows if r.get(key) is not None]
        if not vals:
            return "-"
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        digits = 2 if scale != 1.0 else 4
        return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"

    auc = any(r.get("prune/auc_pruned") is not None for rows in groups.values() for r in rows)
    extra = " AUC, no retrain (ratio 0 to final) |" if auc else ""
    print(
        "| job | n | dense acc % | pruned acc % (no retrain) | acc % after retrain | FLOPs |"
        + extra
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if auc else ""))
    for key in sorted(groups):
        rows = groups[key]
        flops = statistics.mean(float(r["cost/flops"]) for r in rows)
        cells = f" {fmt(rows, 'prune/auc_pruned', scale=1.0)} |" if auc else ""
        print(
            f"| {key} | {len(rows)} | {fmt(rows, 'test/acc_dense')} "
            f"| {fmt(rows, 'test/acc_pruned')} "
            f"| {fmt(rows, 'test/acc')} | {flops:,.0f} |" + cells
        )
    if args.summary is not None and groups:
        date = datetime.date.fromtimestamp(max(finished)).isoformat() if finished else None
        this = (
            f"python benchmarks/summarize_sweeps.py {_braced(folders)} "
            f"--summary {args.summary} --run {args.run}"
        )
        write_run(
            args.summary,
            Path(args.summary).stem,
            args.run,
            [*args.made_by, this],
            {"groups": {key: _group_summary(groups[key]) for key in sorted(groups)}},
            notes="; ".join(
                [
                    "the date is when the last job finished; the machine is where it was "
                    "summarised",
                    *([args.notes] if args.notes else []),
                ]
            ),
            date=date,
        )


if __name__ == "__main__":
    main()
