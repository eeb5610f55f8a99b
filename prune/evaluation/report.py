"""Result tables of the explanation evaluation: JSON-ready dicts and markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def markdown_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[str] | None = None,
    first: str = "method",
    digits: int = 3,
) -> str:
    """A GitHub/TensorBoard markdown table, one row per key of ``rows``.

    Args:
        rows: row name -> {column: value}.
        columns: column order (default: the union of keys, in first-seen order).
        first: header of the row-name column.
        digits: decimals shown.
    """
    if columns is None:
        columns = list(dict.fromkeys(c for r in rows.values() for c in r))

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.{digits}f}"
        return "" if v is None else str(v)

    lines = [
        "| " + " | ".join([first, *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, row in rows.items():
        lines.append("| " + " | ".join([name, *(cell(row.get(c)) for c in columns)]) + " |")
    return "\n".join(lines)
