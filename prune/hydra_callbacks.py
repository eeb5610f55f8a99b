"""Hydra callback: after a multirun, write summary.csv and an accuracy-vs-FLOPs plot."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from prune.results import write_text

log = logging.getLogger(__name__)

COLUMNS = [
    "job",
    "status",
    "criterion",
    "target",
    "keep",
    "ratio",
    "seed",
    "data_source",
    "test/acc_dense",
    "test/acc_pruned",
    "test/acc",
    "cost/flops",
    "cost/params",
    "prune/flops_ratio",
    "prune/params_ratio",
    "prune/auc_pruned",  # area under accuracy vs pruning ratio (runs of several rounds)
    "prune/auc",
]


def _criterion_name(config: dict[str, Any]) -> str:
    pruner = config.get("pruner") or {}
    target = (pruner.get("criterion") or {}).get("_target_", "none")
    return target.rsplit(".", 1)[-1].removesuffix("Criterion").lower() or "none"


def summarize(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per job folder under ``sweep_dir``; failed jobs (no complete results) included."""
    rows = []
    for job in sorted(
        p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        path, error = job / "results.json", job / "error.txt"
        if error.is_file():
            rows.append({"job": job.name, "status": f"failed: {error.read_text().strip()}"})
            continue
        if not path.is_file():
            rows.append({"job": job.name, "status": "failed (no results.json)"})
            continue
        try:
            res = json.loads(path.read_text())
        except ValueError:
            rows.append({"job": job.name, "status": "failed (unreadable results.json)"})
            continue
        config = res.get("config", {})
        final = res.get("final") or (res.get("rounds") or [{}])[-1]
        pruner = config.get("pruner") or {}
        row = {
            "job": job.name,
            "status": res.get("status", "unknown"),
            "criterion": _criterion_name(config),
            "target": pruner.get("target"),
            "keep": pruner.get("keep"),
            "ratio": pruner.get("ratio"),
            "seed": config.get("seed"),
            "data_source": res.get("data", {}).get("source"),
        }
        row.update({k: final.get(k) for k in COLUMNS if k in final})
        row.update({k: res[k] for k in ("prune/auc_pruned", "prune/auc") if k in res})
        rows.append(row)
    return rows


def write_summary(
    sweep_dir: str | os.PathLike, rows: list[dict[str, Any]] | None = None
) -> tuple[Path, Path | None]:
    """Write ``summary.csv`` (atomically) and ``acc_vs_flops.png`` into ``sweep_dir``.

    ``rows`` are those of :func:`summarize`, read from the sweep folder when not given.
    """
    sweep_dir = Path(sweep_dir)
    rows = summarize(sweep_dir) if rows is None else rows
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = sweep_dir / "summary.csv"
    write_text(csv_path, buffer.getvalue())
    return csv_path, plot_summary(rows, sweep_dir / "acc_vs_flops.png")


def plot_summary(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Test accuracy against FLOPs (2 x MACs), one curve per criterion, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get("cost/flops") is not None and row.get("test/acc") is not None:
            groups[row["criterion"]][float(row["cost/flops"])].append(float(row["test/acc"]))
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in sorted(groups.items()):
        xs = sorted(points)
        ax.plot(xs, [sum(points[x]) / len(points[x]) for x in xs], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per sample (2 x MACs)")
    ax.set_ylabel("test accuracy")
    ax.legend(title="criterion")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class SweepSummary(Callback):
    """Registered in ``conf/hydra/default.yaml``; runs when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = summarize(sweep_dir)  # read every job's results once
        csv_path, plot = write_summary(sweep_dir, rows)
        failed = [r["job"] for r in rows if r["status"] != "complete"]
        log.info("sweep summary: %s%s", csv_path, f", plot: {plot}" if plot else "")
        if failed:
            log.warning("jobs without complete results: %s", ", ".join(failed))
