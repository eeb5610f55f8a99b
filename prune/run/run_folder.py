"""The run folder: a command never writes over what another run left there.

``train.py`` owns its whole folder: one that already holds a run (``results.json`` or
``checkpoints/``) is refused unless ``resume=true`` continues that run or ``overwrite=true``
moves it aside first (renamed to ``<folder>.replaced-<time>``, kept whole, never mixed with the
new run). ``evaluate.py`` writes ``evaluation.json`` (and ``explanations/``), never a training
run's ``results.json``; it refuses a folder that holds those unless ``overwrite=true`` moves them
aside (``<name>.replaced-<time>``). A sweep refuses a sweep folder whose jobs left results.

:class:`prune.run.hydra_callbacks.RunFolderGuard` runs these checks, and the config checks,
from Hydra's ``on_run_start``, before Hydra creates the folder and writes its ``.hydra/`` files
into it; the pipeline runs :func:`claim` again for callers that do not go through Hydra.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from prune.errors import ConfigError

log = logging.getLogger(__name__)

#: what each task writes into its folder (the first entry is its results file)
OWNED = {"train": ("results.json", "checkpoints"), "evaluate": ("evaluation.json", "explanations")}


def _stamp() -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def _aside(path: Path) -> Path:
    """A free name beside ``path`` to move it to."""
    stem = f"{path.name}.replaced-{_stamp()}"
    target, n = path.with_name(stem), 1
    while target.exists():
        target, n = path.with_name(f"{stem}-{n}"), n + 1
    path.rename(target)
    return target


def claim(out: str | Path, task: str, resume: bool = False, overwrite: bool = False) -> None:
    """Make sure ``task`` may write into ``out``; with ``overwrite`` move earlier output aside.

    Raises:
        ConfigError: ``out`` holds another run's output and neither ``resume`` (train only) nor
            ``overwrite`` is set, or ``out`` is not a folder.
    """
    if rank_zero_only.rank != 0:  # DDP's other processes join the run rank 0 claimed
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the output folder {str(out)!r} is a file; choose another hydra.run.dir")
    owned = [out / name for name in OWNED[task]]
    found = [p for p in owned if p.exists()]
    if not found or (resume and task == "train"):
        return
    if not overwrite:
        hint = "resume=true to continue that run, " if task == "train" else ""
        raise ConfigError(
            f"{str(out)!r} already holds {found[0].name} of another {task} run; nothing was "
            f"written. Use {hint}another hydra.run.dir, or overwrite=true to move the old "
            "files aside"
        )
    if task == "train":
        moved = _aside(out)
        out.mkdir()
        log.warning("overwrite=true: the earlier run in %s was moved to %s", out, moved)
        return
    for path in found:
        log.warning("overwrite=true: %s was moved to %s", path, _aside(path))


def claim_sweep(sweep_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """A multirun into a sweep folder whose jobs left results is refused (or moved aside)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir() or resume:
        return
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / "results.json").exists()]
    if not jobs:
        return
    if not overwrite:
        raise ConfigError(
            f"the sweep folder {str(sweep_dir)!r} already holds results of {len(jobs)} jobs; "
            "nothing was written. Use another hydra.sweep.dir, resume=true, or overwrite=true "
            "to move the old sweep aside"
        )
    log.warning(
        "overwrite=true: the earlier sweep %s was moved to %s", sweep_dir, _aside(sweep_dir)
    )
