"""A checkpoint's stored config is data, never code: the checks it passes before anything in it
is instantiated.

A checkpoint can be loaded with ``weights_only=True`` and still carry a ``run_config`` that names
any importable callable as a ``_target_`` (``builtins.open``, ``numpy.savetxt``, ``os.system``).
Hydra's ``instantiate`` would call it. So a stored config may name only the classes that the
project's own configs name (the ``_target_`` values of ``conf/**/*.yaml``: the registry of models,
datasets, optimizers, schedulers, composites, criteria, callbacks and loggers) or that are found,
without importing anything, as a model or dataset class of ``prune.models`` / ``prune.data`` or
an optimizer or learning-rate scheduler of ``torch.optim``; it may use none of
Hydra's other special keys but ``_partial_``, ``_recursive_`` and ``_convert_``, and holds no
``${...}`` interpolation (a stored config is saved resolved, so one is never legitimate). The
values are then checked by :func:`prune.run.validation.validate_config`, as on the command line.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from prune.errors import ConfigError
from prune.run.config_keys import CONF

#: Hydra keys a stored config may hold besides ``_target_``
ALLOWED_SPECIAL = frozenset({"_target_", "_partial_", "_recursive_", "_convert_"})


@functools.cache
def registered_targets() -> frozenset[str]:
    """Every ``_target_`` named in ``conf/**/*.yaml`` (read as plain YAML, nothing resolved)."""
    found: set[str] = set()
    for path in CONF.rglob("*.yaml"):
        for _, key, value in _walk(yaml.safe_load(path.read_text()) or {}):
            if key == "_target_" and isinstance(value, str):
                found.add(value)
    return frozenset(found)


def _is_known_class(target: str) -> bool:
    """A model, dataset, optimizer or scheduler class reached by attribute lookup only (an
    attacker's module path is never imported: importing runs its code)."""
    import torch

    import prune.data
    import prune.models

    module_name, _, name = target.rpartition(".")
    kinds = {
        "prune.models": (prune.models, torch.nn.Module),
        "prune.data": (prune.data, prune.data.TensorDataModule),
        "torch.optim": (torch.optim, torch.optim.Optimizer),
        "torch.optim.lr_scheduler": (
            torch.optim.lr_scheduler,
            torch.optim.lr_scheduler.LRScheduler,
        ),
    }
    if module_name not in kinds or name.startswith("_"):
        return False
    module, base = kinds[module_name]
    cls = getattr(module, name, None)
    return isinstance(cls, type) and issubclass(cls, base)


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted path, key, value)`` of every entry of nested dicts and lists."""
    items = node.items() if isinstance(node, Mapping) else enumerate(node)
    for key, value in items:
        path = f"{prefix}{key}"
        yield path, key, value
        if isinstance(value, (Mapping, list, tuple)):
            yield from _walk(value, f"{path}.")


def check_stored_config(stored: Any, key: str, path: str | Path) -> None:
    """Refuse a checkpoint's ``run_config`` that could make ``instantiate`` run code.

    Args:
        stored: the checkpoint's ``run_config`` (None passes: nothing is rebuilt from it).
        key: the config key that named the checkpoint (for the message).
        path: the checkpoint file (for the message).

    Raises:
        ConfigError: naming the checkpoint, the offending entry and what is allowed.
    """
    if stored is None:
        return
    where = f"{key}={str(path)!r}"
    if not isinstance(stored, Mapping):
        raise ConfigError(f"{where}: its run_config is a {type(stored).__name__}, not a mapping")
    allowed = registered_targets()
    for dotted, name, value in _walk(stored):
        if not isinstance(name, (str, int)):
            raise ConfigError(f"{where}: its run_config has a key of type {type(name).__name__}")
        if isinstance(name, str) and name.startswith("_") and name.endswith("_"):
            if name not in ALLOWED_SPECIAL:
                raise ConfigError(
                    f"{where}: its run_config sets {dotted}, a Hydra key a stored config may "
                    f"not use (allowed: {sorted(ALLOWED_SPECIAL)}); refusing the checkpoint"
                )
            known = isinstance(value, str) and (value in allowed or _is_known_class(value))
            if name == "_target_" and not known:
                raise ConfigError(
                    f"{where}: its run_config names {dotted}={value!r}, which is not a class of "
                    "the project's configs (conf/**/*.yaml), prune.models, prune.data or "
                    "torch.optim; refusing it (a class of your own: give it a conf/ yaml file; "
                    "evaluate.py use_checkpoint_config=false rebuilds from the command line)"
                )
        if isinstance(value, str) and "${" in value:
            raise ConfigError(
                f"{where}: its run_config holds an interpolation at {dotted} ({value!r}); a "
                "stored config is saved resolved, refusing the checkpoint"
            )
