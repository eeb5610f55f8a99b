"""Hydra callbacks: before a run, check its config and folder (:class:`RunFolderGuard`); after a
multirun, write summary.csv and an accuracy-vs-FLOPs plot (:class:`SweepSummary`).

Importing it also registers the ``${safe_dirname:}`` resolver of ``hydra.sweep.subdir``
(:mod:`prune.run.run_names`), for launchers that run jobs in other processes and send Hydra's
callbacks, this one included, along with them (submitit pickles its launcher's context).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from prune.run.entry import USER_ERRORS, exit_with
from prune.run.results import write_text
from prune.run.run_folder import OWNED, claim_sweep
from prune.run.run_names import safe_dirname  # noqa: F401  (the resolver, in job processes too)
from prune.run.sweep_plot import plot_summary, trajectory

log = logging.getLogger(__name__)

COLUMNS = [
    "job",
    "status",
    "criterion",
    "target",
    "keep",
    "ratio",  # fraction removed after the last round (results' prune/ratio), whatever set it
    "ratio_config",  # pruner.ratio as configured (empty when pruner.keep set the size)
    "seed",
    "model",
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

#: significant digits of the floats in summary.csv (it is read by people)
DIGITS = 6


def _criterion_name(config: dict[str, Any]) -> str:
    pruner = config.get("pruner") or {}
    target = (pruner.get("criterion") or {}).get("_target_", "none")
    return target.rsplit(".", 1)[-1].removesuffix("Criterion").lower() or "none"


def _one_line(text: str) -> str:
    """``text`` with its whitespace, newlines included, collapsed to single spaces."""
    return " ".join(str(text).split())


def _job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders directly under ``sweep_dir`` (hidden folders, such as ``.hydra``, not)."""
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _results_folder(job: Path) -> Path:
    """Where ``job`` keeps its ``results.json`` or ``error.txt``: ``job`` itself, or, for a sweep
    made before job folder names were made safe (a value with ``/`` nested the folder at every
    ``/``), the one folder below it that holds them."""
    if (job / "results.json").is_file() or (job / "error.txt").is_file():
        return job
    found = {
        p.parent
        for name in ("results.json", "error.txt")
        for p in job.rglob(name)
        if not any(part.startswith(".") for part in p.relative_to(job).parts)
    }
    return found.pop() if len(found) == 1 else job


def _missing_results(folder: Path) -> str:
    """Status of a job folder without results: what the folder shows, no guessed reason."""
    logs = sorted(p.name for p in folder.glob("*.log") if p.is_file())
    see = f"; see {', '.join(logs)}" if logs else ""
    if (folder / ".hydra").is_dir():  # Hydra writes it when the job starts
        return (
            "no results.json: the job started but was stopped (or is still running) before it "
            f"wrote any, and left no error.txt{see}"
        )
    return f"no results.json: the job did not start, or was stopped before it wrote any{see}"


def _completed_since(results: Path, error: Path) -> bool:
    """True when ``results`` says complete and was written after ``error`` (a job that failed,
    then completed when run again in its folder: its old ``error.txt`` is stale)."""
    try:
        newer = results.stat().st_mtime_ns > error.stat().st_mtime_ns
        return newer and json.loads(results.read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def _status(res: dict[str, Any]) -> str:
    """The job's status from its results: ``complete``, ``failed: <error>``, or what stopped it."""
    status = res.get("status", "unknown")
    if status == "complete":
        return "complete"
    if res.get("error"):
        return f"failed: {_one_line(res['error'])}"
    if status == "running":  # the sweep is over, so the job was stopped (killed, interrupted)
        rounds = [r for r in res.get("rounds") or [] if isinstance(r, dict)]
        of = ((res.get("config") or {}).get("pruner") or {}).get("rounds")
        if not rounds:
            done = "before its first round"
        else:
            done = f"after round {rounds[-1].get('round', len(rounds) - 1)}"
            done += f" of {of}" if of is not None else ""
        return f"incomplete: results.json stops {done} (status 'running', no error recorded)"
    return f"{status} (results.json gives no error)"


def _row(name: str, res: dict[str, Any]) -> dict[str, Any]:
    """The summary row of a job from its results (``ratio``: what its last round removed)."""
    config = res.get("config") or {}
    final = res.get("final") or (res.get("rounds") or [{}])[-1]
    final = final if isinstance(final, dict) else {}
    pruner = config.get("pruner") or {}
    ratio = final.get("prune/ratio")
    if ratio is None and final.get("round") == 0:  # the dense model: nothing removed yet
        ratio = 0.0
    row = {
        "job": name,
        "status": _status(res),
        "criterion": _criterion_name(config),
        "target": pruner.get("target"),
        "keep": pruner.get("keep"),
        "ratio": ratio,
        "ratio_config": pruner.get("ratio") if pruner.get("keep") is None else None,
        "seed": config.get("seed"),
        "data_source": (res.get("data") or {}).get("source"),
        "model": str(((config.get("model") or {}).get("net") or {}).get("_target_", "?")).rsplit(
            ".", 1
        )[-1],
        "trajectory": trajectory(res),  # for the plot, not a CSV column
    }
    row.update({k: final[k] for k in COLUMNS if "/" in k and k in final})  # the metrics
    row.update({k: res[k] for k in ("prune/auc_pruned", "prune/auc") if k in res})
    return row


def summarize(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per job folder under ``sweep_dir``, failed and unfinished jobs included.

    A job that did not complete says why in ``status``: ``failed: <reason>`` from the
    ``error.txt`` its run wrote, else the error in its ``results.json``; ``incomplete: ...``
    when its ``results.json`` stops after some round; ``no results.json ...`` when it left none.

    Args:
        sweep_dir: the multirun folder (``hydra.sweep.dir``).

    Returns:
        Rows of the columns in :data:`COLUMNS` (those known), sorted by job folder name.
    """
    rows = []
    for job in _job_folders(Path(sweep_dir)):
        folder = _results_folder(job)
        name = folder.relative_to(job.parent).as_posix()
        path, error = folder / "results.json", folder / "error.txt"
        res: dict[str, Any] | None = None
        if path.is_file():
            try:
                res = json.loads(path.read_text())
            except ValueError as err:
                res = {"status": "failed", "error": f"unreadable results.json ({err})"}
            if not isinstance(res, dict):
                res = {"status": "failed", "error": "results.json does not hold a JSON object"}
        if error.is_file() and not _completed_since(path, error):
            reason = _one_line(error.read_text(errors="replace")) or "error.txt is empty"
            res = {**(res or {}), "status": "failed", "error": reason}
        if res is None:
            rows.append({"job": name, "status": _missing_results(folder)})
            continue
        rows.append(_row(name, res))
    return rows


def _cell(value: Any) -> Any:
    """A CSV cell: floats to :data:`DIGITS` significant digits, whole floats without ``.0``."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if value.is_integer() and abs(value) < 1e15:
        return int(value)
    return f"{value:.{DIGITS}g}"


def write_summary(
    sweep_dir: str | os.PathLike, rows: list[dict[str, Any]] | None = None
) -> tuple[Path, Path | None]:
    """Write ``summary.csv`` (atomically) and ``acc_vs_flops.png`` into ``sweep_dir``.

    Args:
        sweep_dir: the multirun folder.
        rows: those of :func:`summarize`; read from ``sweep_dir`` when None.

    Returns:
        The CSV's path, and the plot's (None when no job has accuracy and FLOPs).
    """
    sweep_dir = Path(sweep_dir)
    rows = summarize(sweep_dir) if rows is None else rows
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    csv_path = sweep_dir / "summary.csv"
    write_text(csv_path, buffer.getvalue())
    return csv_path, plot_summary(rows, sweep_dir / "acc_vs_flops.png")


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


def task_config(config: DictConfig, output_dir: str) -> DictConfig:
    """The job's config without the ``hydra`` node, its output folder set to ``output_dir``."""
    cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg


class RunFolderGuard(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): check the config and the run folder before
    Hydra creates the folder, so that bad input leaves no trace and nothing is overwritten."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        task = str(config.get("task_name", ""))
        if task not in OWNED:
            return
        out = str(Path(str(config.hydra.run.dir)).absolute())
        cfg = task_config(config, out)
        from prune.run.preflight import preflight  # here: Hydra loads this module before any job

        exit_on_error(preflight, cfg)  # one-line errors before anything is written

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.get("task_name", "")) not in OWNED:
            return
        exit_on_error(
            claim_sweep,
            config.hydra.sweep.dir,
            resume=bool(config.get("resume", False)),
            overwrite=bool(config.get("overwrite", False)),
        )


def exit_on_error(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Hydra turns a callback's exception into a warning and goes on: stop here instead."""
    try:
        fn(*args, **kwargs)
    except USER_ERRORS as err:
        exit_with(err)
