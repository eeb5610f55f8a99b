"""Benchmark summaries: the small JSON files in ``benchmarks/summaries/`` that the docs pages
are made from (``python benchmarks/make_pages.py``).

A summary file holds one benchmark's runs::

    {"benchmark": "explain_speed",
     "runs": {"mlp-epsilon-cpu": {"command": "python benchmarks/explain_speed.py ...",
                                  "machine": {"description": "2-core CPU, ...", ...},
                                  "date": "2026-12-07",
                                  "figures": {...raw numbers...}}}}

``command`` is a string or a list of commands run in order; ``figures`` holds raw numbers
(fractions for accuracies, seconds, ratios), never formatted text; an optional ``notes`` holds a
short remark about the run. A benchmark script writes its own run with :func:`write_run` when
given ``--summary`` (:func:`add_summary_option`); the machine and the date are recorded here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: where the committed summaries live (``make_pages.py`` reads them from here)
SUMMARIES = Path(__file__).resolve().parent / "summaries"
#: what a ``--data-root`` value is replaced by in a recorded command (no machine's own path)
DATA_PLACEHOLDER = "/path/to/data"
#: significant digits of the floats in a summary file (the pages show at most four)
DIGITS = 6


def add_summary_option(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--summary [PATH]`` to ``parser``: without a path, ``benchmarks/summaries/<name>``.

    Args:
        parser: the benchmark's argument parser.
        name: the summary file's name, without ``.json``.
    """
    parser.add_argument(
        "--summary",
        nargs="?",
        const=SUMMARIES / f"{name}.json",
        default=None,
        type=Path,
        metavar="PATH",
        help=f"write this run into a summary file (default path: benchmarks/summaries/{name}.json)",
    )


def machine() -> dict[str, Any]:
    """The machine this process runs on: platform, usable cores, torch and the GPU if any."""
    import torch  # here, so that make_pages.py (which imports no torch) stays fast

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    system = f"{platform.system()} {platform.machine()}"
    description = f"{cpus}-core CPU ({system}), torch {torch.__version__}"
    description += f", GPU {gpu}" if gpu else ", no GPU"
    return {
        "description": description,
        "platform": platform.platform(),
        "cpus": cpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": gpu,
    }


def today() -> str:
    """Today's date, ``YYYY-MM-DD``."""
    return datetime.date.today().isoformat()


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran ``script``, as it would be typed from the repository root.

    ``--summary`` and its path are left out (where the run is recorded does not change it), and
    the value of ``--data-root`` becomes :data:`DATA_PLACEHOLDER`.

    Args:
        script: the script's path from the repository root, ``benchmarks/<name>.py``.
        argv: the arguments; ``sys.argv[1:]`` by default.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--summary":
            i += 1 if i + 1 >= len(args) or args[i + 1].startswith("-") else 2
            continue
        if arg.startswith("--summary="):
            i += 1
            continue
        if arg == "--data-root" and i + 1 < len(args):
            kept += [arg, DATA_PLACEHOLDER]
            i += 2
            continue
        kept.append(f"--data-root={DATA_PLACEHOLDER}" if arg.startswith("--data-root=") else arg)
        i += 1
    return shlex.join(["python", script, *kept])


def plain(obj: Any) -> Any:
    """``obj`` for a summary file: floats to :data:`DIGITS` significant digits (whole ones,
    FLOPs and parameter counts, exact), NaN and infinities as None (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return obj if obj.is_integer() else float(f"{obj:.{DIGITS}g}")
    return obj


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (0 for one value) and the values themselves."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "values": values}


def write_run(
    path: str | os.PathLike,
    benchmark: str,
    run: str,
    command: str | Sequence[str],
    figures: Mapping[str, Any],
    notes: str | None = None,
    date: str | None = None,
    label: str | None = None,
) -> Path:
    """Record one run in the summary file ``path``, replacing an earlier run of the same name.

    The other runs in the file stay as they are: each keeps its own command, machine and date.

    Args:
        path: the summary file (created with its folder if missing).
        benchmark: the benchmark's name, the file's ``benchmark`` field.
        run: the run's name within the file (e.g. ``mlp-epsilon-cpu``).
        command: the command, or the commands in order, that reproduce the run.
        figures: the run's raw numbers.
        notes: an optional short remark.
        date: when the figures were measured, ``YYYY-MM-DD``; today by default.
        label: the name the page shows for the run (a table row), if it is not the run's.

    Returns:
        The path written.

    Raises:
        ValueError: ``path`` holds the summary of another benchmark.
    """
    path = Path(path)
    data: dict[str, Any] = {"benchmark": benchmark, "runs": {}}
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("benchmark") != benchmark:
            raise ValueError(
                f"{path} holds the summary of {data.get('benchmark')!r}, not {benchmark!r}"
            )
    entry: dict[str, Any] = {
        "command": command if isinstance(command, str) else list(command),
        "machine": machine(),
        "date": date or today(),
        "figures": dict(figures),
    }
    if notes:
        entry["notes"] = notes
    if label:
        entry["label"] = label
    data.setdefault("runs", {})[run] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain(data), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote run {run!r} to {path}")
    return path
