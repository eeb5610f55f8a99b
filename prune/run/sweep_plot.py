"""The sweep's figure: test accuracy against FLOPs, every criterion's trajectory over its rounds.

Each curve is one criterion at one size setting (``pruner.keep`` or ``pruner.ratio``): its
points are the rounds, from the dense model to the last cut, at the mean FLOPs and mean accuracy
over the sweep's seeds, with the spread over seeds as error bars. Hollow markers show the
accuracy right after each cut, before fine-tuning. The dense model is one black star.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import mean, pstdev
from typing import Any


def trajectory(res: dict[str, Any]) -> list[dict[str, float]]:
    """``(round, flops, acc, acc_pruned)`` of each finished round of one job's results (its
    ``final`` row alone when it lists no rounds)."""
    points = []
    rows = res.get("rounds") or ([{"round": 1, **res["final"]}] if res.get("final") else [])
    for row in rows:
        if not isinstance(row, dict) or row.get("cost/flops") is None or "test/acc" not in row:
            continue
        points.append(
            {
                "round": int(row.get("round", 0)),
                "flops": float(row["cost/flops"]),
                "acc": float(row["test/acc"]),
                "acc_pruned": float(row.get("test/acc_pruned", row["test/acc"])),
            }
        )
    return points


def _curve_name(row: dict[str, Any], several_sizes: bool) -> str:
    name = str(row.get("criterion") or "none")
    if not several_sizes:
        return name
    size = (
        f"keep={row['keep']}" if row.get("keep") is not None else f"ratio={row.get('ratio_config')}"
    )
    return f"{name}, {size}"


def _title(rows: Sequence[dict[str, Any]]) -> str:
    models = sorted({str(r.get("model") or "?") for r in rows})
    # "MNIST (/data/MNIST/raw)" -> "MNIST": where the files were is no part of the title
    sources = sorted(
        {re.sub(r" \([^()]*/[^()]*\)$", "", str(r.get("data_source") or "?")) for r in rows}
    )
    return f"{', '.join(models)} on {'; '.join(sources)}"


def draw(rows: Sequence[dict[str, Any]]) -> Any:
    """The figure of :func:`plot_summary` (a matplotlib ``Figure``), or None without data.

    Args:
        rows: summary rows, each with ``trajectory`` (:func:`trajectory`), ``criterion``,
            ``keep``, ``ratio_config``, ``model`` and ``data_source``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("trajectory")]
    if not rows:
        return None
    sizes = {(r.get("keep"), r.get("ratio_config")) for r in rows}
    curves: dict[str, dict[int, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    dense: list[dict[str, float]] = []
    for row in rows:
        for point in row["trajectory"]:
            if point["round"] == 0:
                dense.append(point)
            curves[_curve_name(row, len(sizes) > 1)][point["round"]].append(point)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_round in sorted(curves.items()):
        rounds = sorted(by_round)
        xs = [mean(p["flops"] for p in by_round[k]) for k in rounds]
        ys = [100 * mean(p["acc"] for p in by_round[k]) for k in rounds]
        spread = [100 * pstdev([p["acc"] for p in by_round[k]]) for k in rounds]
        line = ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=name)
        cut = [k for k in rounds if k > 0]
        before = [100 * mean(p["acc_pruned"] for p in by_round[k]) for k in cut]
        ax.plot(
            [xs[rounds.index(k)] for k in cut],
            before,
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            color=line[0].get_color(),
        )
    if dense:
        ax.plot(
            [mean(p["flops"] for p in dense)],
            [100 * mean(p["acc"] for p in dense)],
            linestyle="none",
            marker="*",
            markersize=14,
            color="black",
            label="dense",
        )
    ax.plot(
        [],
        [],
        linestyle="none",
        marker="o",
        markerfacecolor="none",
        color="gray",
        label="before fine-tuning",
    )
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per sample (2 x MACs)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(_title(rows), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_summary(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Draw :func:`draw`'s figure into ``path`` (PNG); None when no job has rounds to draw."""
    import matplotlib.pyplot as plt

    fig = draw(rows)
    if fig is None:
        return None
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
