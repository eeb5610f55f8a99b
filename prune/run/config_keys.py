"""Read a composed config: one key's value, a component's class and arguments. Errors are one
line naming the key, the value and what is allowed (the building blocks of
:mod:`prune.run.validation`)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from prune.checks import Check, check_arguments, check_values
from prune.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    """Names selectable for a config group (``conf/<group>/*.yaml``)."""
    folder = CONF / group
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")


def has_key(node: Any, key: str) -> bool:
    """``node`` is a config with an entry ``key`` (set, null or '???')."""
    return isinstance(node, DictConfig) and key in node.keys()  # noqa: SIM118 (``in`` is False for "???")


def is_present(cfg: DictConfig, key: str) -> bool:
    """The dotted ``key`` has an entry in ``cfg`` (set, null or '???')."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    return has_key(parent, leaf)


def get_value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at dotted ``key`` (None when absent); '???' raises a ConfigError."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not has_key(parent, leaf):
        return None
    if OmegaConf.is_missing(parent, leaf):
        raise ConfigError(f"{key} is required but not set (add {key}=... to the command line)")
    value = parent[leaf]
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def check_keys(cfg: DictConfig, prefix: str, checks: Mapping[str, Check]) -> None:
    """Apply ``checks`` to the keys ``<prefix><name>`` that ``cfg`` has."""
    values = {n: get_value(cfg, prefix + n) for n in checks if is_present(cfg, prefix + n)}
    check_values(checks, values, prefix)


#: keys of a component's config that Hydra reads itself
SPECIAL = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def argument_names(cfg: DictConfig, key: str) -> list[str]:
    """The names of the arguments that the component config at ``key`` sets."""
    node = OmegaConf.select(cfg, key)
    return [n for n in node.keys() if n not in SPECIAL]  # noqa: SIM118


def check_names(cls: type, names: Iterable[str], key: str) -> None:
    """Every name in ``names`` is an argument of ``cls``'s constructor (one that takes
    ``**kwargs`` takes any): a misspelt or foreign key stops the run before it is built."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    taken = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for name in names:
        if name not in taken:
            raise ConfigError(
                f"{key}.{name} is not an argument of {cls.__module__}.{cls.__qualname__}; "
                f"it takes {', '.join(taken)}"
            )


def find_class(cfg: DictConfig, key: str, base: type, group: str | None, what: str) -> type | None:
    """Import the class named by ``<key>._target_`` and check it is a ``base``.

    Returns:
        The class; None when ``<key>`` holds no ``_target_``.
    """
    target = get_value(cfg, f"{key}._target_")
    if target is None:
        return None
    choose = "use an importable class path"
    if group:
        choose = f"choose {group}=<one of {group_options(group)}>"
    try:
        cls = get_class(str(target))
    except Exception:
        raise ConfigError(
            f"{key}._target_={target!r} is not a known {what} class; {choose}"
        ) from None
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise ConfigError(
            f"{key}._target_={target!r} is not a {what} (a subclass of "
            f"{base.__module__}.{base.__name__}); {choose}"
        )
    return cls


def check_component(
    cfg: DictConfig, key: str, base: type, group: str | None, what: str
) -> type | None:
    """The class of the component at ``key`` (a ``base``), its arguments checked by what the
    class declares (:func:`prune.checks.check_arguments`).

    Returns:
        The class; None when ``cfg`` has no component at ``key``.
    """
    node = OmegaConf.select(cfg, key)
    if not isinstance(node, DictConfig):
        return None
    cls = find_class(cfg, key, base, group, what)
    if cls is None:
        choose = f": choose {group}=<one of {group_options(group)}>" if group else ""
        raise ConfigError(f"{key}._target_ is not set; {key} needs the {what} class{choose}")
    names = argument_names(cfg, key)
    check_names(cls, names, key)
    check_arguments(cls, {n: get_value(cfg, f"{key}.{n}") for n in names}, f"{key}.")
    return cls
