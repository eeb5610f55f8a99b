"""What the entry points share: turn bad input into a one-line error and a non-zero exit."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger("prune")

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, InstantiationException, OmegaConfBaseException)


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def run(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Call ``fn(cfg)``; a configuration or input error exits with status 2 and one line."""
    try:
        return fn(cfg)
    except USER_ERRORS as err:
        cause = _root_cause(err)
        message = cause.args[0] if isinstance(cause, KeyError) and cause.args else str(cause)
        message = " ".join(str(message).split())
        log.error("error: %s", message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
