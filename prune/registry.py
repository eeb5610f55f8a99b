"""Named registries: the one mechanism behind every string-to-class lookup of the project.

Hydra configs name classes by ``_target_``; a registry gives the same classes short names for
the Python API and for lists of choices (``attribute(model, x, composite="epsilon_plus")``,
``get_method("gradient")``). A class joins with a decorator next to its definition, so adding
one touches one file::

    COMPOSITES = Registry("composite")

    @COMPOSITES.register("epsilon_plus")
    class EpsilonPlus(LayerMap): ...

    COMPOSITES.get("epsilon_plus", epsilon=1e-9)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories (classes or functions) by name.

    Args:
        kind: what the entries are, for error messages ("composite", "attribution method").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a factory under ``name`` and returns it unchanged.

        Raises:
            KeyError: when ``name`` is taken.
        """

        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return add

    def __getitem__(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            raise KeyError(f"unknown {self.kind} {name!r}; choose from {self.names()}")
        return self._factories[name]

    def get(self, name: str, **kwargs: Any) -> T:
        """Build the entry called ``name`` with ``kwargs``.

        Raises:
            KeyError: for an unknown name, listing the registered ones.
        """
        return self[name](**kwargs)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def items(self) -> list[tuple[str, Callable[..., T]]]:
        """``(name, factory)`` pairs in registration order."""
        return list(self._factories.items())
