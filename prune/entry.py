"""What the entry points share: turn bad input into a one-line error and a non-zero exit."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger("prune")

USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    InstantiationException,
    OmegaConfBaseException,
)


def _root_cause(err: BaseException) -> BaseException:
    """The error inside Hydra's InstantiationException wrappers (our own messages stay whole)."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def _quiet_lightning() -> None:
    """Lightning logs through its own console handler *and* Hydra's root logger: keep Hydra's."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)
    # our datamodules leave normalisation to the module on purpose (it travels in checkpoints)
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )


def _message(err: BaseException) -> str:
    cause = _root_cause(err)
    message = cause.args[0] if isinstance(cause, KeyError) and cause.args else str(cause)
    return " ".join(str(message).split())


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # no Hydra run around us (tests, notebooks)
        return False


def run(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Call ``fn(cfg)``; a configuration or input error exits with status 2 and one line.

    In a sweep (``-m``) a failing job must not stop the others nor the sweep summary: any error
    is logged as one line, written to ``error.txt`` in the job's folder (the summary lists it),
    and ``{"status": "failed", "error": ...}`` is returned instead.
    """
    _quiet_lightning()
    try:
        return fn(cfg)
    except Exception as err:
        if _in_multirun():
            message = _message(err)
            log.error("error: %s", message, exc_info=not isinstance(err, USER_ERRORS))
            print(f"error: {message}", file=sys.stderr)
            from prune.results import write_text

            error = f"{type(err).__name__}: {message}\n"
            write_text(Path(cfg.paths.output_dir) / "error.txt", error)
            return {"status": "failed", "error": message}
        if not isinstance(err, USER_ERRORS):
            raise
        message = _message(err)
        log.error("error: %s", message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
