"""Functional ops in container forwards (``x + f(x)``, ``F.relu``, ``flatten``) and their rules.

A ``TorchFunctionMode`` active during the explained forward gives a functional sum the composite's
sum rule, lets ReLU (fused with any owed rescale, see :mod:`prune.lrp.flow`) and pure data
movement through, and stops at any other op with a message that names it and the module whose
forward called it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.overrides import TorchFunctionMode

from prune.lrp.flow import fused_relu, is_owing, materialize_all

if TYPE_CHECKING:
    from prune.lrp.engine import Engine

#: Functional ops that only move or copy values: their gradient is the right rule.
DATA_MOVEMENT = frozenset(
    [
        "flatten",
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "squeeze",
        "unsqueeze",
        "permute",
        "transpose",
        "t",
        "contiguous",
        "expand",
        "expand_as",
        "__getitem__",
        "narrow",
        "select",
        "unflatten",
        "clone",
        "cat",
        "concat",
        "concatenate",
        "stack",
        "chunk",
        "split",
        "unbind",
        "movedim",
        "dropout",
        "to",
        "float",
        "double",
        "half",
        "type_as",
    ]
)
#: Functional ops that read metadata or never carry relevance.
PASSIVE = frozenset(
    [
        "__get__",
        "size",
        "dim",
        "numel",
        "stride",
        "is_contiguous",
        "data_ptr",
        "__len__",
        "__format__",
        "__repr__",
        "is_floating_point",
        "__bool__",
        "detach",
        "requires_grad_",
        "__hash__",
        "__eq__",
        "register_hook",
    ]
)
ADD = frozenset({"add", "__add__", "__radd__", "add_", "__iadd__"})
RELU = frozenset({"relu", "relu_"})


class UnsupportedLayerError(NotImplementedError):
    """A layer or functional op for which the composite defines no LRP rule."""


def _tensors(args: Iterable[Any]) -> Iterable[Tensor]:
    for a in args:
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, list | tuple):
            yield from _tensors(a)


class _Mode(TorchFunctionMode):
    """Routes functional ops in container forwards to rules, or stops at unsupported ones."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        run = self.engine.run
        if run.inside:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", repr(func))
        tensors = list(_tensors(args))
        if name in PASSIVE or not any(t.requires_grad for t in tensors):
            return func(*args, **kwargs)
        root = any(t in run.roots for t in tensors)
        inplace = name in ("relu_", "add_", "__iadd__") or bool(kwargs.get("inplace"))
        if name in RELU and not inplace and not self.engine.leaf_depth:
            fused = fused_relu(args[0], run)
            if fused is not None:
                return fused
        if inplace and args and isinstance(args[0], Tensor):  # about to change: copy recorded
            self.engine.before_inplace(args[0])  # values that are it or a view of it
        if inplace or any(is_owing(t, run) for t in tensors):  # a consumer other than a ReLU
            args = materialize_all(args, run, inplace_first=inplace)
        if name in DATA_MOVEMENT:
            out = func(*args, **kwargs)
            if root:
                for t in _tensors([out]):
                    run.roots.add(t)
            return out
        run.root_other_used |= root
        if self.engine.leaf_depth:  # inside max-pool & co: native gradient is the rule
            return func(*args, **kwargs)
        if name in RELU:
            return func(*args, **kwargs)
        if name in ADD and len(args) == 2 and not kwargs:
            a, b = args
            inplace = name in ("add_", "__iadd__")
            if not (isinstance(a, Tensor) and a.requires_grad) and not inplace:
                a, b = b, a
            return self.engine.composite.sum_rule.add(a, b, inplace=inplace, run=run)
        raise UnsupportedLayerError(
            f"LRP has no rule for the functional op {name!r} called in the forward of "
            f"{self.engine.where()}; use a module with a rule (or add a rule for it) instead of "
            f"the functional form"
        )
