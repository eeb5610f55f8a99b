"""What the results page's sections share: a sweep's groups by their overrides, and a group's
metrics (a summary's runs: :func:`page_text.runs_named`).

Groups of a sweep summary (``summarize_sweeps.py --summary``) are found by their overrides, e.g.
``{"data": "mnist", "pruner": "taylor"}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from page_text import Run


def overrides_of(key: str) -> dict[str, str]:
    """A job key ``a=1,b=2`` (Hydra's override_dirname) as ``{"a": "1", "b": "2"}``."""
    return dict(item.split("=", 1) for item in key.split(",") if "=" in item)


def group_of(run: Run, **overrides: str) -> dict[str, Any] | None:
    """The sweep group whose overrides are exactly ``overrides`` (``.`` written as ``__``)."""
    want = {k.replace("__", "."): str(v) for k, v in overrides.items()}
    for key, group in (run.get("figures", {}).get("groups") or {}).items():
        if overrides_of(key) == want:
            return group
    return None


def metric_of(group: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    return None if group is None else (group.get("metrics") or {}).get(name)


def round_of(group: Mapping[str, Any] | None, k: int, name: str) -> dict[str, Any] | None:
    if group is None:
        return None
    return ((group.get("rounds") or {}).get(str(k)) or {}).get(name)


def seed_text(seeds: Sequence[Any], sep: str = ", ") -> str:
    return sep.join(str(s) for s in seeds)
