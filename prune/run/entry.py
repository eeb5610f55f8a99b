"""What the entry points share: turn bad input into one error line, printed once, and exit
status 2, whether Hydra finds it (an unknown option, a key typo, an output folder it cannot
create) or the run does."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import HydraException, InstantiationException
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


def one_line(text: str) -> str:
    """Hydra's and OmegaConf's several-line messages as one line; a list after a line ending in
    ':' (Hydra's available options) is joined with commas."""
    text = str(text).split("Config search path:")[0]  # Hydra's search path: noise here
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    out, listing = "", False
    for i, line in enumerate(lines):
        if i == 0:
            out = line
        elif lines[i - 1].endswith(":"):
            out, listing = f"{out} {line}", " " not in line
        elif listing and " " not in line:
            out = f"{out}, {line}"
        else:
            out, listing = f"{out.rstrip('.')}; {line}", False
    return " ".join(out.split())


def _message(err: BaseException) -> str:
    cause = _root_cause(err)
    message = cause.args[0] if isinstance(cause, KeyError) and cause.args else str(cause)
    if isinstance(cause, OSError) and cause.filename is not None:
        message = f"cannot write {cause.filename!r}: {cause.strerror or message}"
    return one_line(str(message))


def report(message: str, traceback: bool = False) -> None:
    """Print ``error: <message>`` once on stderr, and put it in the run's log file (not on the
    console a second time), with the traceback when ``traceback`` (a bug, not bad input)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    exc_info = sys.exc_info() if traceback else None
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "error: %s", (message,), exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def exit_with(err: BaseException) -> NoReturn:
    """Report ``err`` as one line and exit with status 2."""
    report(_message(err))
    sys.exit(2)


def cli(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; Hydra's own errors (an unknown config option, a key that
    does not exist, an output folder it cannot create) become one line and exit status 2 too."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing and exiting 1
    try:
        main()
    except (HydraException, OmegaConfBaseException, OSError, *USER_ERRORS) as err:
        exit_with(err)


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
            report(message, traceback=not isinstance(err, USER_ERRORS))
            from prune.run.results import write_text

            error = f"{type(err).__name__}: {message}\n"
            write_text(Path(cfg.paths.output_dir) / "error.txt", error)
            return {"status": "failed", "error": message}
        if not isinstance(err, USER_ERRORS):
            raise
        exit_with(err)
