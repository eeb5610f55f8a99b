"""What the entry points share: turn bad input into a one-line error and a non-zero exit."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
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
    while err.__cause__ is not None:
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


def run(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Call ``fn(cfg)``; a configuration or input error exits with status 2 and one line."""
    _quiet_lightning()
    try:
        return fn(cfg)
    except USER_ERRORS as err:
        cause = _root_cause(err)
        message = cause.args[0] if isinstance(cause, KeyError) and cause.args else str(cause)
        message = " ".join(str(message).split())
        log.error("error: %s", message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
