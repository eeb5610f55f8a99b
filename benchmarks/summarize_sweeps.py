"""Mean ± std over seeds of several sweep folders (each with results.json per job).

    python benchmarks/summarize_sweeps.py logs/input_pruning/sweep_s*
Groups jobs by everything in their folder name except the job number and seed, and prints a
markdown table of test accuracy (dense, pruned before retraining, after) and FLOPs.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from prune.run.hydra_callbacks import summarize


def main(folders: list[str]) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for folder in folders:
        for row in summarize(folder):
            if row.get("status") != "complete":
                print(f"skipped {folder}/{row['job']}: {row.get('status')}", file=sys.stderr)
                continue
            key = re.sub(r"^\d+_", "", row["job"])
            groups[key].append(row)

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


if __name__ == "__main__":
    main(sys.argv[1:] or [str(p) for p in Path("logs").glob("**/multiruns/*")])
