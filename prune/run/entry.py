"""What the entry points share: turn bad input into one error line, printed once, and exit
status 2, whether Hydra finds it (an unknown option, a key typo, an output folder it cannot
create) or the run does."""

from __future__ import annotations

import logging
import os
import re
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


#: Lightning's INFO lines that every Trainer repeats (about 16 Trainers in a pruning run), about
#: the machine or about a default value, never about the run: dropped wherever they would go
LIGHTNING_BANNERS = (
    "GPU available: ",
    "TPU available: ",
    "HPU available: ",
    "`Trainer(limit_train_batches=1.0)` was configured so 100%",
    "`Trainer(limit_val_batches=1.0)` was configured so 100%",
    "`Trainer(limit_test_batches=1.0)` was configured so 100%",
    "`Trainer(limit_predict_batches=1.0)` was configured so 100%",
    "💡 Tip: For seamless cloud",  # litlogger / litmodels advertising
)
#: Lightning's INFO lines about each fit and test of a round: kept in the run's log file, where
#: they say which checkpoint was tested, but not on the console, which has one line a round
LIGHTNING_PROGRESS = (
    "`Trainer.fit` stopped: ",
    "Restoring states from the checkpoint path at ",
    "Loaded model weights from the checkpoint at ",
)
#: (message, category) of the warnings Lightning gives on every run that are not about the user's
#: setup: regular expressions matched from the message's start, and only when Lightning's own
#: code raises the warning
LIGHTNING_WARNINGS = (
    # torch 2.14 deprecates the LeafSpec check that Lightning's own _pytree.py still makes
    (re.escape("`isinstance(treespec, LeafSpec)` is deprecated"), FutureWarning),
    # the module's overrides are deliberate: uint8 batches are moved as a pair, then normalised
    # on the device by the module (its mean and std travel in its checkpoints)
    (
        re.escape("You have overridden `")
        + "(transfer_batch_to_device|on_after_batch_transfer)"
        + re.escape("` in `LightningModule` but have passed in a `LightningDataModule`"),
        UserWarning,
    ),
    # ClassifierModule logs the epoch's training loss and accuracy at the epoch's end whatever
    # the interval, so a short epoch loses nothing this warning is about
    (
        re.escape("The number of training batches (")
        + r"\d+"
        + re.escape(") is smaller than the logging interval"),
        UserWarning,
    ),
)


class KnownLines(logging.Filter):
    """Drop log records whose message starts with one of ``prefixes``; let all others through."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a known line (dropped), True otherwise."""
        return not record.getMessage().startswith(self.prefixes)


# one instance each, so that calling _quiet_lightning again adds nothing twice
_BANNERS = KnownLines(LIGHTNING_BANNERS)
_PROGRESS = KnownLines(LIGHTNING_PROGRESS)


def _quiet_lightning() -> None:
    """Keep Lightning's console to what is about the run, at the source of each known line.

    Lightning logs through its own console handler *and* Hydra's root logger: keep Hydra's.
    Its per-Trainer banners (:data:`LIGHTNING_BANNERS`) are dropped, its per-fit notes
    (:data:`LIGHTNING_PROGRESS`) go to the log file only, and its known warnings
    (:data:`LIGHTNING_WARNINGS`) are ignored by exact text when Lightning raises them. Any other
    record or warning, Lightning's or the user's, still shows. Safe to call more than once.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if _is_console(handler):
                logger.removeHandler(handler)
    # a logger's filters see only the records logged to it: rank_zero_info's logger, by name
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_BANNERS)
    for handler in logging.getLogger().handlers:  # Hydra's console handler, not its file one
        if _is_console(handler):
            handler.addFilter(_PROGRESS)
    for message, category in LIGHTNING_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=r"lightning\.")


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


def _is_console(handler: logging.Handler) -> bool:
    """A handler that writes to a terminal stream (a ``FileHandler`` is a ``StreamHandler`` too)."""
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def to_log_file(logger: logging.Logger, level: int, message: str, exc_info: Any = None) -> None:
    """Put ``message`` into the run's log file(s) only: for what the console shows otherwise."""
    record = logger.makeRecord(logger.name, level, __file__, 0, "%s", (message,), exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def report(message: str, traceback: bool = False) -> None:
    """Print ``error: <message>`` once on stderr, and put it in the run's log file (not on the
    console a second time), with the traceback when ``traceback`` (a bug, not bad input)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    exc_info = sys.exc_info() if traceback else None
    to_log_file(log, logging.ERROR, f"error: {message}", exc_info)


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
