"""What a run shows: its round lines and tables on the console and in its log file, and its
summary in TensorBoard (figures per round, the config beside the final figures)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from prune.run.entry import to_log_file
from prune.run.report import plain_text, print_table, round_line, rounds_table

log = logging.getLogger(__name__)


@rank_zero_only
def log_round(row: dict[str, Any], rounds: int, fine_tuned: bool = True) -> None:
    """The round's one line (console and log file), from rank 0 only."""
    log.info("%s", round_line(row, rounds, fine_tuned))


@rank_zero_only
def show(table: Any, notes: list[str]) -> None:
    """Print ``table`` and ``notes`` on stdout, and put them in the run's log file too."""
    print_table(table, notes)
    # into the log file as well, where the console's copy is not: a run's folder tells all
    to_log_file(log, logging.INFO, "\n" + plain_text(table, notes))


def show_rounds(results: dict[str, Any], out: Path) -> None:
    """The run's summary: the rounds' table, the data warning again, and the results' path."""
    warning = [f"warning: {results['warning']}"] if results.get("warning") else []
    show(rounds_table(results["rounds"], title="results by round"), warning)
    log.info("results: %s", out / "results.json")


def summary_logger(cfg: DictConfig) -> Any:
    """The TensorBoard logger of the run's summary (version ``summary``), or None."""
    if not cfg.get("logger"):
        return None
    return instantiate(cfg.logger)(version="summary")


def log_summary(logger: Any, step: int, metrics: dict[str, float]) -> None:
    """``metrics`` under ``summary/<metric>`` at step ``step`` (the round)."""
    if logger is not None:
        logger.log_metrics({f"summary/{k}": v for k, v in metrics.items()}, step=step)
        logger.save()


def log_hparams(logger: Any, cfg: DictConfig, final: dict[str, Any]) -> None:
    """The run's config and final figures in TensorBoard's HPARAMS tab (which compares the
    jobs of a sweep), under ``hparams/<metric>``."""
    if logger is None:
        return
    metrics = {
        f"hparams/{k}": float(v)
        for k, v in final.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "round"
    }
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True), metrics=metrics)
    logger.save()
