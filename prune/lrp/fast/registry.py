"""Which kernel is the fast form of which rule: one table, filled by the ``@kernel`` decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prune.lrp.rules.base import Rule

if TYPE_CHECKING:
    from prune.lrp.fast.base import Kernel

#: ``{rule type: kernel type}``, by exact type: a subclass of a rule may change its maths, so it
#: runs its own reference form until it registers a kernel of its own.
KERNELS: dict[type[Rule], type[Kernel]] = {}


def kernel(rule_type: type[Rule]) -> Callable[[type[Kernel]], type[Kernel]]:
    """Class decorator: register the decorated kernel as the fast form of ``rule_type``."""

    def register(cls: type[Kernel]) -> type[Kernel]:
        KERNELS[rule_type] = cls
        return cls

    return register


def kernel_for(rule: Rule) -> Kernel | None:
    """The kernel of ``rule`` (bound to its parameters), or None where its type has none."""
    cls = KERNELS.get(type(rule))
    return None if cls is None else cls(rule)
