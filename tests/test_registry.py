"""The registry behind every name lookup."""

from __future__ import annotations

import pytest

from prune.registry import Registry


def test_registry_builds_registered_class_with_kwargs():
    things = Registry("thing")

    @things.register("pair")
    class Pair:
        def __init__(self, a: int = 1, b: int = 2) -> None:
            self.a, self.b = a, b

    built = things.get("pair", b=5)
    assert isinstance(built, Pair) and (built.a, built.b) == (1, 5)
    assert "pair" in things and things.names() == ["pair"] and things["pair"] is Pair


def test_registry_refuses_unknown_and_duplicate_names():
    things = Registry("thing")
    things.register("a")(dict)
    with pytest.raises(KeyError, match=r"unknown thing 'b'; choose from \['a'\]"):
        things.get("b")
    with pytest.raises(KeyError, match="registered twice"):
        things.register("a")(list)
