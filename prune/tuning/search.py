"""The search: Optuna's TPE sampler over a :class:`~prune.tuning.space.SearchSpace`, one value
(a few-shot pruning AUC) per trial."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from prune.errors import ConfigError
from prune.tuning.space import SearchSpace

log = logging.getLogger(__name__)

INSTALL = "pip install -e .[tune]"
"""How to install the search's one extra dependency, Optuna."""


def import_optuna() -> ModuleType:
    """Optuna, or a one-line error that says how to install it.

    Raises:
        ConfigError: Optuna is not installed.
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"tune.py needs optuna, which is not installed: {INSTALL}") from None
    return optuna


@dataclass
class TrialRecord:
    """One trial: its parameters, its value (None when it failed) and why it failed."""

    number: int
    params: dict[str, Any]
    value: float | None
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """For JSON."""
        return asdict(self)


def search(
    value_of: Callable[[dict[str, Any]], float],
    space: SearchSpace,
    groups: Sequence[str],
    n_trials: int,
    sampler_seed: int,
    first: Mapping[str, Any] | None = None,
    after_trial: Callable[[TrialRecord, list[TrialRecord]], None] | None = None,
) -> list[TrialRecord]:
    """Maximise ``value_of(params)`` over ``space`` for ``groups`` in ``n_trials`` trials.

    Trials are drawn by Optuna's TPE sampler seeded with ``sampler_seed``; the first trial takes
    ``first`` when given (the base composite's parameters, so the search starts from what it
    should beat). A trial whose parameters make ``value_of`` raise a ``ValueError`` (relevance
    that is NaN or infinite under those rules) is recorded as failed with its error, and the
    search goes on.

    Args:
        value_of: the objective; higher is better.
        space: what each trial chooses.
        groups: the layer groups that get a rule.
        n_trials: number of trials, >= 1.
        sampler_seed: seed of the sampler.
        first: parameters of the first trial, or None.
        after_trial: called after each trial with its record and all records so far.

    Returns:
        Every trial's record, in order.
    """
    optuna = import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line a trial is ours to log
    sampler = optuna.samplers.TPESampler(seed=int(sampler_seed))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    if first is not None:
        study.enqueue_trial(dict(first))
    records: list[TrialRecord] = []
    for _ in range(int(n_trials)):
        trial = study.ask()
        params = space.suggest(trial, groups)
        started = time.perf_counter()
        try:
            value = float(value_of(params))
        except ValueError as err:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            record = TrialRecord(trial.number, params, None, _since(started), message)
        else:
            study.tell(trial, value)
            record = TrialRecord(trial.number, params, value, _since(started))
        records.append(record)
        if after_trial is not None:
            after_trial(record, records)
    return records


def best_of(records: Sequence[TrialRecord]) -> TrialRecord:
    """The trial with the highest value (the earliest of equal ones).

    Raises:
        ValueError: every trial failed (naming the first error).
    """
    done = [r for r in records if r.value is not None]
    if not done:
        first = records[0].error if records else "no trial ran"
        raise ValueError(f"every trial of the search failed; the first: {first}")
    return max(done, key=lambda r: (r.value, -r.number))


def _since(started: float) -> float:
    return time.perf_counter() - started
