"""What a search tells its user: one line per trial, and the table of the best composite against
the default one (from the contents of ``tune_results.json``). Pure: values in, text or a table
out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from prune.run.report import NotedTable
from prune.tuning.search import TrialRecord
from prune.tuning.space import AGGREGATE, describe


def _auc(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def choice_text(params: Mapping[str, Any], groups: Sequence[str]) -> str:
    """``attention=gamma 0.31, mlp=epsilon 1e-05, aggregate=signed``."""
    parts = [f"{group}={describe(params, group)}" for group in groups]
    return ", ".join([*parts, f"{AGGREGATE}={params.get(AGGREGATE, '-')}"])


def trial_line(
    record: TrialRecord, n_trials: int, best: float | None, groups: Sequence[str]
) -> str:
    """``trial #2 (3/50): val AUC 0.8123 (best 0.8400); attention=..., aggregate=signed``, the
    trial named by its ``number`` in ``tune_results.json``."""
    head = f"trial #{record.number} ({record.number + 1}/{n_trials}): "
    if record.value is None:
        head += f"failed ({record.error})"
    else:
        head += f"val AUC {record.value:.4f} (best {_auc(best)})"
    return f"{head}; {choice_text(record.params, groups)} [{record.seconds:.1f} s]"


def comparison_table(results: Mapping[str, Any], title: str | None = None) -> NotedTable:
    """The default composite and the best one found: each group's rule, the criterion's
    aggregate, and the few-shot pruning AUC on the validation split (what was searched on) and
    on the test split (measured once, after the search)."""
    groups = list(results["groups"]["searched"])
    n_done = sum(1 for t in results["trials"] if t["value"] is not None)
    failed = len(results["trials"]) - n_done
    objective = results["objective"]
    notes = [
        f"AUC: area under accuracy vs fraction of {objective['target']} removed, no fine-tuning; "
        f"val: {objective['val_images']} images (searched on), "
        f"test: {objective['test_images']} images",
        f"{n_done} trials complete" + (f", {failed} failed" if failed else ""),
    ]
    fixed = results["groups"].get("fixed") or {}
    if fixed:
        why = next(iter(fixed.values()))
        notes.append(f"not searched (the base composite's rules): {', '.join(fixed)}: {why}")
    table = NotedTable(title=title, notes=notes)
    table.add_column("composite")
    for group in groups:
        table.add_column(group)
    table.add_column(AGGREGATE)
    table.add_column("val AUC", justify="right")
    table.add_column("test AUC", justify="right")
    for name in ("default", "best"):
        row = results[name]
        cells = [
            name if name == "default" else f"best (trial #{row['trial']})",
            *(describe(row["params"], group) for group in groups),
            str(row["params"].get(AGGREGATE, "-")),
            _auc(row.get("val/auc_pruned")),
            _auc(row.get("test/auc_pruned")),
        ]
        table.add_row(*(Text(cell) for cell in cells))
    return table
