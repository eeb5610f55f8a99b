"""Schedules: the cumulative fraction pruned after round k of n."""

from __future__ import annotations

from collections.abc import Callable


def constant(final_ratio: float, round_index: int, rounds: int) -> float:
    """Equal steps: every round removes the same number of the dense units, ``R * k / n``."""
    return final_ratio * round_index / rounds


def geometric(final_ratio: float, round_index: int, rounds: int) -> float:
    """Equal fractions: every round removes the same share of what is left.

    The kept fraction after round k is ``(1 - R) ** (k / n)``; early rounds remove more
    units than later ones, which leaves later, smaller models gentler cuts.
    """
    return 1.0 - (1.0 - final_ratio) ** (round_index / rounds)


SCHEDULES: dict[str, Callable[[float, int, int], float]] = {
    "constant": constant,
    "geometric": geometric,
}


def ratio_at(schedule: str, final_ratio: float, round_index: int, rounds: int) -> float:
    """Cumulative fraction of the dense units removed after ``round_index`` (0..rounds)."""
    if schedule not in SCHEDULES:
        raise KeyError(f"unknown schedule {schedule!r}; choose from {sorted(SCHEDULES)}")
    if not 0 <= round_index <= rounds:
        raise ValueError(f"round_index must be in [0, {rounds}], got {round_index}")
    return SCHEDULES[schedule](float(final_ratio), int(round_index), int(rounds))
