"""Argument checks a component declares next to its constructor, read before it is built.

A component class states which values its constructor arguments allow in a ``config_checks``
class attribute, argument name -> :class:`Check`, and may define a ``check_config`` classmethod
for rules that tie arguments together::

    class Pruner:
        config_checks = {"rounds": int_at_least(1), "schedule": choice("constant", "geometric")}

        @classmethod
        def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
            if values.get("ratio", 0.5) is None and values.get("keep") is None:
                raise ConfigError(f"{prefix}ratio and {prefix}keep are both null; set one")

Both are collected along the class's MRO (a subclass adds to or replaces its bases' checks; each
class's own ``check_config`` runs, bases first, without calling ``super()``). They take plain
values: :func:`check_arguments` is what a config reader (``prune.run.validation``) calls with the
values a config gives, and errors name the full key, ``data.batch_size must be an integer >= 1,
got 0``. Plain Python only, so the core (``prune.lrp``, ``prune.pruning``) declares its checks too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prune.errors import ConfigError


def is_int(value: Any) -> bool:
    """An integer, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Check:
    """The allowed values of one argument.

    Args:
        allowed: what is allowed, as the message says it after "must be".
        test: True for an allowed value.
        nullable: None is allowed too (the text ``allowed`` says so itself, or not).
    """

    def __init__(self, allowed: str, test: Callable[[Any], bool], nullable: bool = False) -> None:
        self.allowed, self.test, self.nullable = allowed, test, nullable

    def __call__(self, key: str, value: Any) -> None:
        """Raise unless ``value`` is allowed.

        Raises:
            ConfigError: ``<key> must be <allowed>, got <value>``.
        """
        if value is None and self.nullable:
            return
        if not self.test(value):
            raise ConfigError(f"{key} must be {self.allowed}, got {value!r}")

    def __repr__(self) -> str:
        return f"Check({self.allowed!r})"


def integer() -> Check:
    """Any integer."""
    return Check("an integer", is_int)


def int_at_least(low: int, nullable: bool = False) -> Check:
    """An integer >= ``low`` (or null)."""
    allowed = f"an integer >= {low}" + (" or null" if nullable else "")
    return Check(allowed, lambda v: is_int(v) and v >= low, nullable)


def boolean(nullable: bool = False) -> Check:
    """true or false (or null, with ``nullable``)."""
    return Check("true or false", lambda v: isinstance(v, bool), nullable)


def choice(*options: Any) -> Check:
    """One of ``options``."""
    return Check(f"one of {list(options)}", lambda v: v in options)


def finite_number(low: float | None = None, above: bool = False, nullable: bool = False) -> Check:
    """A finite number, >= ``low`` (> ``low`` with ``above``) when given."""
    bound = "" if low is None else f" {'>' if above else '>='} {low:g}"

    def test(v: Any) -> bool:
        if not is_number(v) or not math.isfinite(v):
            return False
        return low is None or (v > low if above else v >= low)

    return Check(f"a finite number{bound}", test, nullable)


def fraction(
    low: float = 0.0,
    high: float = 1.0,
    closed: str = "both",
    note: str = "",
    nullable: bool = False,
) -> Check:
    """A number in an interval, ``closed`` at "both" ends, the "left", the "right" or "neither".

    ``note`` is said after the interval: ``fraction(closed="left", note="fraction removed")``
    reads ``in [0, 1) (fraction removed)``.
    """
    if closed not in ("both", "left", "right", "neither"):
        raise ValueError(f"closed must be both, left, right or neither, got {closed!r}")
    left, right = closed in ("both", "left"), closed in ("both", "right")
    text = f"in {'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"

    def test(v: Any) -> bool:
        if not is_number(v):
            return False
        return (low <= v if left else low < v) and (v <= high if right else v < high)

    return Check(text + (f" ({note})" if note else ""), test, nullable)


def number_list(
    note: str = "", positive: bool = False, length: int | None = None, nullable: bool = False
) -> Check:
    """A non-empty list of numbers (all > 0 with ``positive``; ``length`` of them when given)."""
    size = f"{length} " if length is not None else ""
    allowed = (
        f"a list of {size}numbers" + (" > 0" if positive else "") + (f" ({note})" if note else "")
    )

    def test(v: Any) -> bool:
        ok = isinstance(v, (list, tuple)) and bool(v) and all(is_number(x) for x in v)
        ok = ok and (length is None or len(v) == length)
        return ok and (not positive or all(x > 0 for x in v))

    return Check(allowed + (" or null" if nullable else ""), test, nullable)


def int_list(low: int = 1, length: int | None = None, or_int: bool = False) -> Check:
    """A non-empty list of integers >= ``low`` (``length`` of them when given); with ``or_int``
    one integer >= ``low`` is allowed too."""
    size = f"{length} " if length is not None else ""

    def test(v: Any) -> bool:
        if or_int and is_int(v):
            return v >= low
        ok = isinstance(v, (list, tuple)) and bool(v) and all(is_int(x) and x >= low for x in v)
        return ok and (length is None or len(v) == length)

    if or_int:
        return Check(f"an integer >= {low} or a non-empty list of them", test)
    return Check(f"a non-empty list of {size}integers >= {low}", test)


class ExistingPath(Check):
    """A path that exists: a file (``kind="file"``) or a folder (``kind="dir"``).

    Args:
        kind: "file" or "dir".
        need: what the path must name, as the messages say it ("an .npz file").
        detail: said after ``need`` when the path is not set (" with arrays 'x' and 'y'").
    """

    def __init__(self, kind: str, need: str, detail: str = "") -> None:
        if kind not in ("file", "dir"):
            raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
        super().__init__(need, lambda v: True)
        self.kind, self.need, self.detail = kind, need, detail

    def __call__(self, key: str, value: Any) -> None:
        """Raise unless ``value`` names an existing path of the right kind.

        Raises:
            ConfigError: the path is not set, or names the other kind.
            FileNotFoundError: nothing is there.
        """
        if value is None or str(value) == "":
            raise ConfigError(f"{key} must name {self.need}{self.detail}")
        found = Path(str(value)).expanduser()
        if self.kind == "dir" and found.is_file():
            raise ConfigError(f"{key}={str(value)!r} is a file; need {self.need}")
        if self.kind == "file" and found.is_dir():
            raise ConfigError(f"{key}={str(value)!r} is a directory; need {self.need}")
        if not found.exists():
            raise FileNotFoundError(f"{key}={str(value)!r} does not exist (need {self.need})")


def declared_checks(cls: type) -> dict[str, Check]:
    """The ``config_checks`` of ``cls`` and its bases, a subclass's entry winning."""
    checks: dict[str, Check] = {}
    for klass in reversed(cls.__mro__):
        checks.update(vars(klass).get("config_checks", {}))
    return checks


def check_values(checks: Mapping[str, Check], values: Mapping[str, Any], prefix: str = "") -> None:
    """Apply ``checks`` to those of ``values`` they name (an absent value is not checked).

    Raises:
        ConfigError: naming ``<prefix><name>``, the value and what is allowed (or another error
            a check raises, such as ``FileNotFoundError``).
    """
    for name, check in checks.items():
        if name in values:
            check(f"{prefix}{name}", values[name])


def check_arguments(cls: type, values: Mapping[str, Any], prefix: str = "") -> None:
    """Check the constructor arguments ``values`` of ``cls`` against what it declares.

    Only the arguments in ``values`` are checked (an absent one takes the constructor's
    default); then each class's own ``check_config(values, prefix)`` runs, bases first.

    Args:
        cls: the component class.
        values: argument name -> plain value (lists, dicts, numbers, strings, None).
        prefix: put before an argument's name in messages (``"data."``).

    Raises:
        ConfigError: naming ``<prefix><argument>``, the value and what is allowed (or another
            error a check raises, such as ``FileNotFoundError``).
    """
    check_values(declared_checks(cls), values, prefix)
    for klass in reversed(cls.__mro__):
        own = vars(klass).get("check_config")
        if own is not None:
            own.__get__(None, cls)(values, prefix)
