"""Functional ops in container forwards (``x + f(x)``, ``F.relu``, ``x.mean(1)``) and their rules.

A ``TorchFunctionMode`` active during the explained forward gives each functional op the rule of
the composite's ``op_map`` (its kernel where the backend is fast and the rule has one, else the
rule's reference form), lets ReLU (fused with any owed rescale, see :mod:`prune.lrp.fast.flow`)
and pure data movement through, and stops at any other op with a message that names it and the
module whose forward called it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import Tensor
from torch.overrides import TorchFunctionMode

from prune.lrp.errors import UnsupportedLayerError
from prune.lrp.fast.base import Kernel, takes_relevance
from prune.lrp.fast.flow import fused_relu, is_owing, materialize_all
from prune.lrp.reference import reference_apply
from prune.lrp.rules.base import Op, Rule
from prune.lrp.state import RunState

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
RELU = frozenset({"relu", "relu_"})
#: torch function names -> the op of a composite's ``op_map``
OPS: dict[str, str] = {
    **dict.fromkeys(("add", "__add__", "__radd__", "add_", "__iadd__"), "add"),
    **dict.fromkeys(("mul", "__mul__", "__rmul__", "multiply"), "mul"),
    **dict.fromkeys(("matmul", "__matmul__", "bmm", "mm"), "matmul"),
    **dict.fromkeys(("cat", "concat", "concatenate"), "cat"),
}
OPS.update((op, op) for op in ("sum", "mean", "softmax", "layer_norm"))
OPS["scaled_dot_product_attention"] = "scaled_dot_product_attention"
# a functional average pool (torchvision's MobileNetV2 head) is a mean over windows: the rule of
# "mean", which the presets give the z-rule, as they do average-pool layers
OPS.update((f"{kind}avg_pool{d}d", "mean") for kind in ("", "adaptive_") for d in (1, 2, 3))


def _tensors(args: Iterable[Any]) -> Iterable[Tensor]:
    for a in args:
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, list | tuple):
            yield from _tensors(a)


def _rebuild(args: Any, values: Iterable[Tensor], holes: set[int]) -> Any:
    """``args`` with the tensors at the flat positions ``holes`` replaced by ``values``."""
    values, position = iter(values), [0]

    def walk(a: Any) -> Any:
        if isinstance(a, list | tuple):
            return type(a)(walk(v) for v in a)
        i, position[0] = position[0], position[0] + 1
        return next(values) if i in holes else a

    return walk(args)


def _flat(args: Any) -> list[Any]:
    out: list[Any] = []
    for a in args:
        out.extend(_flat(a) if isinstance(a, list | tuple) else [a])
    return out


class OpMode(TorchFunctionMode):
    """Routes functional ops in container forwards to rules, or stops at unsupported ones.

    Args:
        run: the state of the pass.
        rules: ``{op: rule}``, a composite's ``op_map``.
        kernels: ``{op: kernel}`` of the rules that run in their fast form.
        before_inplace: called with a tensor about to be changed in place.
        where: names the module whose forward is running (for error messages).
    """

    def __init__(
        self,
        run: RunState,
        rules: Mapping[str, Rule],
        kernels: Mapping[str, Kernel],
        before_inplace: Callable[[Tensor], None],
        where: Callable[[], str],
    ) -> None:
        super().__init__()
        self.run, self.rules, self.kernels = run, rules, kernels
        self.before_inplace, self.where = before_inplace, where

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        run = self.run
        if run.inside:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", None) or repr(func)
        tensors = list(_tensors(args))
        if name in PASSIVE or not any(t.requires_grad for t in tensors):
            return func(*args, **kwargs)
        root = any(t in run.roots for t in tensors)
        inplace = name in ("relu_", "add_", "__iadd__") or bool(kwargs.get("inplace"))
        if name in RELU and not inplace and not run.leaf_depth:
            fused = fused_relu(args[0], run)
            if fused is not None:
                return fused
        if inplace and args and isinstance(args[0], Tensor):  # about to change: copy recorded
            self.before_inplace(args[0])  # values that are it or a view of it
        if inplace or any(is_owing(t, run) for t in tensors):  # a consumer other than a ReLU
            args = materialize_all(args, run, inplace_first=inplace)
        op = OPS.get(name)
        if name in DATA_MOVEMENT and (op is None or op not in self.rules):
            out = func(*args, **kwargs)
            if root:
                for t in _tensors([out]):
                    run.roots.add(t)
            return out
        if run.leaf_depth:  # inside max-pool & co: native gradient is the rule
            run.root_other_used |= root
            return func(*args, **kwargs)
        if name in RELU:
            run.root_other_used |= root
            return func(*args, **kwargs)
        if op is not None and op in self.rules:
            return self._rule(op, name, func, args, kwargs, inplace, root)
        run.root_other_used |= root
        raise UnsupportedLayerError(
            f"LRP has no rule for the functional op {name!r} called in the forward of "
            f"{self.where()}; use a module with a rule, or give the composite's op_map a rule "
            f"for it"
        )

    def _rule(self, op, name, func, args, kwargs, inplace, root):
        """``func(*args, **kwargs)`` with the rule of ``op``: its kernel, else its reference."""
        run, kernel = self.run, self.kernels.get(op)
        if kernel is not None:
            if op == "add" and len(args) == 2 and not kwargs:
                a, b = args
                if not (isinstance(a, Tensor) and a.requires_grad) and not inplace:
                    args = (b, a)
            out = kernel.op(op, args, kwargs, inplace, run)
            if out is not None:
                run.root_other_used |= root
                return out
        target = None
        if inplace:
            if op != "add":
                raise UnsupportedLayerError(
                    f"the in-place op {name!r} in the forward of {self.where()} has a rule without "
                    f"a kernel ({type(self.rules[op]).__name__}); write it out of place (x = x + y)"
                )
            # x += y (torch names it add_): the rule's node on a copy of x, the result written
            # back into x (its gradient then flows into the node)
            target, func = args[0], Tensor.add
            args = (target.clone(), *args[1:])
        flat = _flat(args)  # the inputs: tensors that need a gradient, parameters excluded
        holes = {i for i, t in enumerate(flat) if takes_relevance(t)}
        inputs = tuple(flat[i] for i in sorted(holes))

        def fn(*xs: Tensor) -> Tensor:
            return func(*_rebuild(args, xs, holes), **kwargs)

        run.inside += 1
        try:
            layer = Op(fn, name=op, args=args, kwargs=kwargs)
            out = reference_apply(self.rules[op], layer, inputs, run)
            return out if target is None else target.copy_(out)
        finally:
            run.inside -= 1
