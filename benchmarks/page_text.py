"""Markdown pieces for the generated docs pages: numbers, tables and where a figure came from.

A figure in a summary is a raw number, or a list of numbers (one per run or repetition, shown as
their range or one by one), or a statistic ``{"mean", "std", "values", "min", "max"}`` (any of
them). Accuracies are fractions; the pages show them as percentages.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Run = Mapping[str, Any]
#: every summary file's contents, by benchmark name (``make_pages.py`` loads them)
Summaries = Mapping[str, Mapping[str, Any]]


def runs_named(summaries: Summaries, name: str) -> Mapping[str, Run]:
    """The runs of the summary ``name`` (none when the file is missing)."""
    return (summaries.get(name) or {}).get("runs") or {}


def num(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals."""
    return f"{x:.{digits}f}"


def pct(x: float, digits: int = 2) -> str:
    """The fraction ``x`` as a percentage with ``digits`` decimals, without the ``%`` sign."""
    return num(100 * x, digits)


def count(x: float) -> str:
    """A whole number with thousands separators: ``4,586,000``."""
    return f"{round(x):,}"


def seconds(x: float) -> str:
    """Seconds to three significant digits or two decimals: ``0.82``, ``45.6``, ``107``."""
    return num(x, 2 if x < 10 else 1 if x < 100 else 0)


def spell(n: int) -> str:
    """A small count in words (``three``); larger counts as digits."""
    names = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    return names[n] if 0 <= n < len(names) else str(n)


def values(v: float | Sequence[float]) -> list[float]:
    """``v`` as a list of numbers."""
    return list(v) if isinstance(v, (list, tuple)) else [v]


def span(v: float | Sequence[float], digits: int, unit: str = "") -> str:
    """A number, or the range ``lo-hi`` of a list (one number where both ends print alike)."""
    vals = values(v)
    lo, hi = num(min(vals), digits), num(max(vals), digits)
    return (lo if lo == hi else f"{lo}-{hi}") + unit


def listed(v: Sequence[float], digits: int, unit: str = "", last: str = " and ") -> str:
    """``a, b and c`` (each with ``unit``)."""
    parts = [num(x, digits) + unit for x in values(v)]
    return words(parts, last)


def words(parts: Sequence[str], last: str = " and ") -> str:
    """``a, b and c``."""
    parts = list(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + last + parts[-1]


def middle(v: float | Sequence[float]) -> float:
    """The median of a list, or the number itself."""
    return statistics.median(values(v))


def mean(s: Mapping[str, Any] | float) -> float:
    """The mean of a statistic (the median of its range where it gives only one)."""
    if not isinstance(s, Mapping):
        return float(s)
    if "mean" in s:
        return float(s["mean"])
    if "values" in s:
        return statistics.mean(s["values"])
    return (s["min"] + s["max"]) / 2


def plus_minus(s: Mapping[str, Any], digits: int = 2, scale: float = 100.0) -> str:
    """``mean ± std`` of a statistic (``mean`` alone without a std), times ``scale``."""
    text = num(scale * mean(s), digits)
    if s.get("std") is not None:
        text += f" ± {num(scale * s['std'], digits)}"
    return text


def stat(s: Mapping[str, Any], digits: int = 3, scale: float = 1.0) -> str:
    """A statistic as a page shows it: ``mean ± std``, per-value ``a / b``, or ``lo-hi``."""
    if "mean" in s:
        return plus_minus(s, digits, scale)
    if "values" in s:
        return " / ".join(num(scale * x, digits) for x in s["values"])
    return span([scale * s["min"], scale * s["max"]], digits)


def bold(text: str, on: bool = True) -> str:
    """``**text**`` when ``on``."""
    return f"**{text}**" if on else text


def cell(text: str) -> str:
    """``text`` fit for a table cell (``|`` escaped)."""
    return text.replace("|", "\\|")


def table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> str:
    """A markdown table; ``align`` holds one letter per column, ``l`` or ``r``."""
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def commands(run: Run) -> list[str]:
    """The run's commands, in order (none for a run no script reproduces)."""
    command = run.get("command")
    if command is None:
        return []
    return [command] if isinstance(command, str) else list(command)


def code(text: str) -> str:
    """``text`` as inline code."""
    return f"`{text}`"


def command_text(run: Run) -> str:
    """The run's commands as inline code, joined by "then"."""
    found = commands(run)
    if not found:
        return "no script in `benchmarks/` reproduces it"
    return ", then ".join(code(c) for c in found)


def machine(run: Run) -> str:
    """The machine a run was measured on, in words."""
    found = run.get("machine") or {}
    return found.get("description", "an unrecorded machine") if isinstance(found, dict) else found


def when(runs: Iterable[Run]) -> str:
    """``date: machine`` of each distinct date and machine among ``runs``, joined by ``;``."""
    seen: list[str] = []
    for run in runs:
        text = f"{run.get('date', 'undated')}: {machine(run)}"
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


def source(file: str, name: str, run: Run, label: str | None = None) -> str:
    """One line saying how a run was made: commands, machine, date and its summary file."""
    head = f"{label}: " if label else ""
    text = (
        f"{head}{command_text(run)}; measured {run.get('date', 'undated')} on {machine(run)} "
        f"(`benchmarks/summaries/{file}.json`, run `{name}`)"
    )
    if run.get("notes"):
        text += f"; {run['notes']}"
    return text + "."


def sources(items: Sequence[tuple[str, str, Run, str | None]]) -> str:
    """The "Source" paragraph under a table: one line, or a list for several runs."""
    if len(items) == 1:
        return "Source: " + source(*items[0])
    return "Sources:\n\n" + "\n".join(f"- {source(*item)}" for item in items)
