"""Read and check one key of a composed config. Each check raises a one-line ConfigError that
names the key, the value and what is allowed (the building blocks of
:mod:`prune.run.validation`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from prune.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    """Names selectable for a config group (``conf/<group>/*.yaml``)."""
    folder = CONF / group
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")


def has_key(node: Any, key: str) -> bool:
    return isinstance(node, DictConfig) and key in node.keys()  # noqa: SIM118 (``in`` is False for "???")


def get_value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at dotted ``key`` (None when absent); '???' raises a ConfigError."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent.keys():  # noqa: SIM118
        return None
    if OmegaConf.is_missing(parent, leaf):
        raise ConfigError(f"{key} is required but not set (add {key}=... to the command line)")
    value = parent[leaf]
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int_at_least(cfg: DictConfig, key: str, low: int, nullable: bool = False) -> None:
    value = get_value(cfg, key)
    if value is None and (nullable or not is_present(cfg, key)):
        return
    if not is_int(value) or value < low:
        allowed = f"an integer >= {low}" + (" or null" if nullable else "")
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def is_present(cfg: DictConfig, key: str) -> bool:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    return isinstance(parent, DictConfig) and leaf in parent.keys()  # noqa: SIM118


def check_choice(cfg: DictConfig, key: str, allowed: Sequence[Any]) -> None:
    value = get_value(cfg, key)
    if is_present(cfg, key) and value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")


def check_nonneg_number(cfg: DictConfig, key: str) -> None:
    value = get_value(cfg, key)
    if value is None:
        return
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a finite number >= 0, got {value!r}")


def check_class(cfg: DictConfig, key: str, base: type, group: str | None, what: str) -> type | None:
    """Import the class named by ``<key>`` (a ``_target_``) and check it is a ``base``."""
    target = get_value(cfg, key)
    if target is None:
        return None
    choose = "use an importable class path"
    if group:
        choose = f"choose {group}=<one of {group_options(group)}>"
    try:
        cls = get_class(str(target))
    except Exception:
        raise ConfigError(f"{key}={target!r} is not a known {what} class; {choose}") from None
    if not issubclass(cls, base):
        raise ConfigError(
            f"{key}={target!r} is not a {what} (a subclass of {base.__module__}.{base.__name__}); "
            f"{choose}"
        )
    return cls
