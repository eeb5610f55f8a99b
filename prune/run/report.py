"""What a run tells its user: one line per round, and tables of the rounds and of a checkpoint's
cost figures (from the rows of ``results.json`` / the figures of ``evaluation.json``).

The builders are pure: rows in, a string or a :class:`rich.table.Table` out. Only
:func:`print_table` writes (to stdout; plain text, no colours, when stdout is not a terminal).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from prune.evaluation.cost import NOISY_IQR

#: ``cost/latency_ms_b{batch}_{device}``, as :func:`prune.evaluation.cost.measure` names them
#: (the median; not its ``..._iqr`` and ``..._noisy`` companions)
_LATENCY = re.compile(r"cost/latency_ms_b(\d+)_([^\W_]+)$")
_NONE = "-"
#: under a table with a latency marked ``*`` (its ``cost/latency_ms_..._noisy`` flag set)
NOISY_NOTE = f"* spread too wide to trust: IQR above {NOISY_IQR:.0%} of the median"
#: what a latency cell ``median ± spread`` shows
SPREAD_CAPTION = "latency: median ± IQR/2 of the timed repeats"


def _percent(value: Any) -> str:
    return _NONE if value is None else f"{100 * float(value):.2f}%"


def _count(value: Any) -> str:
    return _NONE if value is None else f"{int(value):,}"


def _ms(value: Any) -> str:
    return _NONE if value is None else f"{float(value):.3g}"


def _decimals(value: float) -> int:
    """Decimal places that show ``value`` to 3 significant figures (none from 100 up)."""
    return max(0, 2 - math.floor(math.log10(abs(value)))) if value else 0


def _latency(row: Mapping[str, Any], key: str) -> str:
    """A latency cell: ``0.0746 ± 0.0042`` (median ± IQR/2, to the median's decimals) where
    ``row`` has the IQR (``{key}_iqr``), the median alone where not (older results), and ``*``
    after it where ``{key}_noisy`` is set."""
    median, iqr = row.get(key), row.get(f"{key}_iqr")
    if median is None:
        return _NONE
    if iqr is None:
        cell = _ms(median)
    else:
        places = _decimals(float(median))
        cell = f"{float(median):.{places}f} ± {float(iqr) / 2:.{places}f}"
    return cell + ("*" if row.get(f"{key}_noisy") else "")


def _latency_notes(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    """:data:`NOISY_NOTE` where any of ``keys`` is flagged noisy in any of ``rows``."""
    noisy = any(row.get(f"{key}_noisy") for row in rows for key in keys)
    return [NOISY_NOTE] if noisy else []


def _has_spread(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> bool:
    return any(row.get(f"{key}_iqr") is not None for row in rows for key in keys)


class NotedTable(Table):
    """A :class:`rich.table.Table` with lines that :func:`print_table` prints under it.

    Args:
        *args: as :class:`rich.table.Table`.
        notes: one line each, e.g. what a ``*`` in a cell means.
        **kwargs: as :class:`rich.table.Table`.
    """

    def __init__(self, *args: Any, notes: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes = list(notes)


def _pixels(kept: Mapping[str, Any]) -> str | None:
    if kept.get("inputs_kept") is None:
        return None
    return f"{kept['inputs_kept']:,} of {kept['inputs_dense']:,} pixels"


def _units(kept: Mapping[str, Any]) -> list[str]:
    out = []
    for name, layer in (kept.get("layers") or {}).items():
        dense = layer.get("dense")
        out.append(f"{name} {layer['kept']}" + ("" if dense is None else f"/{dense}"))
    return out


def kept_parts(kept: Mapping[str, Any] | None) -> list[str]:
    """What a plan keeps, from its ``summary()``: ``["228 of 784 pixels"]`` for input pruning,
    ``["conv1 13/20", "fc1 335/500"]`` for unit pruning (both where a plan does both)."""
    kept = kept or {}
    pixels = _pixels(kept)
    return ([pixels] if pixels else []) + _units(kept)


def round_line(row: Mapping[str, Any], rounds: int, fine_tuned: bool = True) -> str:
    """One line for a finished round: what it kept, its accuracy, its cost.

    Args:
        row: the round's row of ``results.json`` (``round``, ``test/acc``, ``cost/flops``; and
            for a pruning round ``kept``, ``test/acc_pruned``, ``prune/flops_ratio``).
        rounds: the run's number of pruning rounds (``pruner.rounds``; 0 without a pruner).
        fine_tuned: whether the round's model was fine-tuned after the cut.

    Returns:
        e.g. ``round 3/5: 228 of 784 pixels kept, acc 97.64% (95.12% before fine-tuning),
        FLOPs 198,800 (37% of dense)``.
    """
    k, acc, flops = int(row["round"]), _percent(row["test/acc"]), _count(row.get("cost/flops"))
    if k == 0:
        params = _count(row.get("cost/params"))
        return f"round 0/{rounds} (dense): acc {acc}, FLOPs {flops}, params {params}"
    kept = row.get("kept") or {}
    parts = [f"{_pixels(kept)} kept"] if _pixels(kept) else []
    if _units(kept):
        parts.append(f"units kept {', '.join(_units(kept))}")
    before = _percent(row.get("test/acc_pruned"))
    tuned = f"{before} before fine-tuning" if fine_tuned else "not fine-tuned"
    parts.append(f"acc {acc} ({tuned})")
    ratio = row.get("prune/flops_ratio")
    parts.append(f"FLOPs {flops}" + ("" if ratio is None else f" ({float(ratio):.0%} of dense)"))
    return f"round {k}/{rounds}: " + ", ".join(parts)


def _latency_keys(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The latency keys present in ``rows``, by device, then batch size."""
    keys = {k for row in rows for k in row if _LATENCY.match(k)}

    def order(key: str) -> tuple[str, int]:
        batch, device = _LATENCY.match(key).groups()
        return device, int(batch)

    return sorted(keys, key=order)


def _latency_header(key: str) -> str:
    batch, device = _LATENCY.match(key).groups()
    return f"latency ms\n{device} b={batch}"


def rounds_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> NotedTable:
    """The summary of a run: one row per round of ``results.json``'s ``rounds``.

    Columns: round, what it kept, test accuracy right after the cut (before fine-tuning) and at
    the round's end, FLOPs (with their share of the dense model's), parameters, and one column
    per measured latency (``cost/latency_ms_b{batch}_{device}``: median ± IQR/2, ``*`` where
    flagged noisy, with :data:`NOISY_NOTE` in the table's notes).
    """
    latency = _latency_keys(rows)
    caption = "acc pruned: right after the cut, before fine-tuning"
    if _has_spread(rows, latency):
        caption += f"\n{SPREAD_CAPTION}"
    table = NotedTable(title=title, caption=caption, notes=_latency_notes(rows, latency))
    table.add_column("round", justify="right")
    table.add_column("kept")
    table.add_column("acc\npruned", justify="right")
    table.add_column("acc", justify="right")
    table.add_column("FLOPs\n(of dense)", justify="right")
    table.add_column("params", justify="right")
    for key in latency:
        table.add_column(_latency_header(key), justify="right")
    for row in rows:
        dense = int(row["round"]) == 0
        ratio = row.get("prune/flops_ratio")
        flops = _count(row.get("cost/flops")) + ("" if ratio is None else f" ({float(ratio):.0%})")
        cells = [
            str(row["round"]),
            "dense" if dense else ", ".join(kept_parts(row.get("kept"))) or _NONE,
            _NONE if dense else _percent(row.get("test/acc_pruned")),
            _percent(row.get("test/acc")),
            flops,
            _count(row.get("cost/params")),
            *(_latency(row, key) for key in latency),
        ]
        table.add_row(*(Text(cell) for cell in cells))  # Text: no markup read into the values
    return table


def figures_table(figures: Mapping[str, Any], title: str | None = None) -> NotedTable:
    """A checkpoint's figures (``evaluation.json``): accuracy, what it keeps, cost, latency
    (median ± IQR/2, ``*`` where flagged noisy, with :data:`NOISY_NOTE` in the table's notes)."""
    latency = _latency_keys([figures])
    caption = SPREAD_CAPTION if _has_spread([figures], latency) else None
    notes = _latency_notes([figures], latency)
    table = NotedTable(title=title, caption=caption, notes=notes)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [("test accuracy", _percent(figures.get("test/acc")))]
    kept = kept_parts(figures.get("kept"))
    if kept:
        rows.append(("kept", ", ".join(kept)))
    rows += [
        ("FLOPs", _count(figures.get("cost/flops"))),
        ("parameters", _count(figures.get("cost/params"))),
    ]
    if figures.get("cost/state_dict_bytes") is not None:
        rows.append(("weights (bytes)", _count(figures["cost/state_dict_bytes"])))
    for key in latency:
        batch, device = _LATENCY.match(key).groups()
        rows.append((f"latency ms, {device}, batch {batch}", _latency(figures, key)))
    for name, value in rows:
        table.add_row(Text(name), Text(value))
    return table


def _width(console: Console, table: Table) -> int:
    """The width the table needs unwrapped (rich assumes 80 columns when not on a terminal)."""
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def print_table(table: Table, notes: Sequence[str] = (), file: io.TextIOBase | None = None) -> None:
    """Print ``table``, then each of its own notes (a :class:`NotedTable`'s) and of ``notes`` on
    its own line, to ``file`` (default stdout).

    On a terminal rich fits the table to its width, with colours; elsewhere (a pipe, a log, a
    test's captured output) it is plain text at the width the table needs, so no cell wraps.
    """
    console = Console(file=file, highlight=False)
    if not console.is_terminal:  # print's own width= is capped at the console's
        console.width = max(console.width, _width(console, table))
    console.print(table)
    for note in [*getattr(table, "notes", ()), *notes]:  # one line each: a log reader greps them
        console.print(Text(note), soft_wrap=True)


def plain_text(table: Table, notes: Sequence[str] = ()) -> str:
    """``table`` and ``notes`` as :func:`print_table` prints them off a terminal (for log files)."""
    out = io.StringIO()
    print_table(table, notes, file=out)
    return out.getvalue()
