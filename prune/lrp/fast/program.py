"""The model's forward as a traced program: the engine's per-layer rules called in graph order.

The engine (:mod:`prune.lrp.engine`) runs a model by putting a wrapper in place of every module's
``forward`` for the pass, under a ``TorchFunctionMode`` that gives functional ops their rules,
and calling the model as usual. For a model explained batch after batch, a :class:`Program` runs
the same wrappers in the order of the model's ``torch.fx`` graph, traced once: no wrappers to
install and remove, no ``nn.Module.__call__`` per layer, and no functional mode unless the
graph has functional ops (``torch.flatten``, ``x + f(x)``); without the mode, the common layers
(epsilon and LRP-0 layers, fused ReLUs, data movement) also skip the rules' general dispatch
(:mod:`prune.lrp.fast.direct`). The relevance is the same, bit for bit; the forward's overhead over
the same pass written out by hand is a fraction of that of installed wrappers (the docs'
performance page).

A module that a canonizer replaces (:meth:`prune.lrp.canonizers.Canonizer.replacements`: the
explicit attention of torchvision's ``nn.MultiheadAttention``, timm's ``LayerScale``) is traced
through its replacement's forward, whose own layers are steps like the model's.

Tracing is best effort: a forward that ``torch.fx`` cannot trace (control flow on sizes), one
with inputs other than the batch that have no default (those with one, such as timm's attention
mask, take it), or a recorded container (whose output is no node of the graph) keeps the
installed wrappers. So does any pass while a module or global forward/backward hook is
registered: module calls run them, a program would not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.fx
from torch import Tensor, nn
from torch._C import DisableTorchFunction
from torch.nn.modules import module as _module

from prune.lrp.fast.reads import SameSamples, analyse, reshape_check

#: how a traced value appears in a string formatted while tracing
_PROXY = re.compile(r"Proxy\(([A-Za-z0-9_]+)\)")

#: A step of a program: the callable; the index of its one argument, or -1 with
#: ``values -> (args, kwargs)`` for any other call; the indices of the values whose last use it
#: is; the module whose forward a functional op belongs to, or None for a layer.
Step = tuple[Callable[..., Any], int, Callable[[list], tuple] | None, tuple[int, ...], str | None]

#: What a step's value is read as (:mod:`prune.lrp.fast.reads`): whether one op alone reads it;
#: for a reshape of one value, that value's index and the check the two must pass.
Read = tuple[bool, int, SameSamples | None]

_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)
_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


class _LeafTracer(torch.fx.Tracer):
    """Traces through containers and stops at exactly the modules that have a rule wrapper; a
    replaced module is traced through its replacement, a stand-in's layers named as the engine
    names them (``names``)."""

    def __init__(
        self,
        leaves: set[nn.Module],
        replaced: Mapping[nn.Module, Callable[..., Any]],
        names: Mapping[nn.Module, str],
    ) -> None:
        super().__init__()
        self.leaves, self.replaced, self.names = leaves, replaced, names

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m in self.leaves

    def path_of_module(self, mod: nn.Module) -> str:
        name = self.names.get(mod)
        return name if name is not None else super().path_of_module(mod)

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        replacement = self.replaced.get(m)
        if replacement is not None:  # in the replaced module's scope, as the engine runs it
            forward = replacement.forward if isinstance(replacement, nn.Module) else replacement
        return super().call_module(m, forward, args, kwargs)


class Program:
    """A traced forward whose module calls are the engine's wrappers, called directly.

    Build it with :func:`trace_program`. A call runs one forward pass; the engine must be
    entered without installing its wrappers, and under its functional mode when
    ``needs_mode``.

    Args:
        steps: one per graph node after the input (see :data:`Step`); a value is freed after its
            last use, so intermediate outputs live as long as in an ordinary forward.
        output: ``values -> `` what the forward returns.
        modules: every module of the model (for the hook check).
        needs_mode: whether the graph has functional ops; without, the engine's wrappers do what
            the mode would for the layers that need it.
        reads: per step, how its value is read (see :data:`Read`), or None for no tensor.
    """

    def __init__(
        self,
        steps: list[Step],
        output: Callable[[list], Any],
        modules: Sequence[nn.Module],
        needs_mode: bool,
        reads: list[Read | None],
    ) -> None:
        self.steps, self.output, self.needs_mode = steps, output, needs_mode
        self.reads = reads
        # the hook dictionaries themselves (registering a hook adds to them in place)
        self._hooks = tuple(getattr(_module, name) for name in _GLOBAL_HOOKS) + tuple(
            getattr(m, name) for m in modules for name in _MODULE_HOOKS
        )

    def usable(self) -> bool:
        """Whether no hook is registered that a module call would run (checked every pass)."""
        return not any(self._hooks)

    def __call__(self, x: Tensor, stack: list[str], read: Callable[..., None] | None = None) -> Any:
        """Run the forward on ``x``; ``stack`` holds the name of the module whose forward a
        functional op belongs to while it runs; ``read(value, once, source, same)`` is told how
        each value is read (:meth:`prune.lrp.state.RunState.read`)."""
        values: list[Any] = [x]
        append = values.append
        for (call, arg, load, free, name), how in zip(self.steps, self.reads, strict=True):
            if arg >= 0:
                append(call(values[arg]))
            elif name is None:
                args, kwargs = load(values)
                append(call(*args, **kwargs))
            else:
                args, kwargs = load(values)
                stack.append(name)
                try:
                    append(call(*args, **kwargs))
                finally:
                    stack.pop()
            if read is not None and how is not None:
                once, source, same = how
                with DisableTorchFunction():  # bookkeeping: no tensor call of it is an op to route
                    read(values[-1], once, None if same is None else values[source], same)
            for i in free:
                values[i] = None
        return self.output(values)


def trace_program(
    model: nn.Module,
    wrappers: dict[nn.Module, Callable[..., Any]],
    custom: dict[nn.Module, Callable[..., Any]],
    modules: Sequence[nn.Module],
    replaced: Mapping[nn.Module, Callable[..., Any]] | None = None,
    names: Mapping[nn.Module, str] | None = None,
) -> Program | None:
    """The traced program of ``model``, or None where tracing does not apply (module docstring).

    Args:
        model: the network, in eval mode (a forward that branches on ``self.training`` is traced
            along the branch the engine runs).
        wrappers: the engine's wrapper of every leaf module (the modules called as a whole).
        custom: for custom native leaves (``lrp_transparent``), the wrapper to call when the graph
            has no functional op (it enters the functional mode for the layer).
        modules: every module of the model.
        replaced: ``{module: forward}`` of the canonizers (traced through ``forward``).
        names: every module's name as the engine gives it, a stand-in's layers included
            (``<name>.<sub>``).
    """
    names = dict(names or {})
    try:
        graph = _LeafTracer(set(wrappers), replaced or {}, names).trace(model)
    except Exception:  # any failure to trace means: run the model as usual
        return None
    nodes = list(graph.nodes)
    if nodes[0].op != "placeholder" or any(
        n.op == "placeholder" and not n.args for n in nodes[1:]
    ):  # the batch first; any other input of the forward must have a default (timm's masks)
        return None
    by_name = {n.name: n for n in nodes}
    for node in nodes:
        _format_at_run_time(node, by_name)
    needs_mode = any(n.op in ("call_function", "call_method") for n in nodes)
    last_use: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in nodes:
        for used in node.all_input_nodes:
            last_use[used] = node
    freed: dict[torch.fx.Node, list[torch.fx.Node]] = {}  # node -> the values it uses last
    for used, node in last_use.items():
        freed.setdefault(node, []).append(used)
    index = {nodes[0]: 0}
    submodules = {**dict(model.named_modules()), **{name: m for m, name in names.items()}}
    # a custom native layer may read its input more than once inside: none counts as read once
    opaque = {n for n in nodes if n.op == "call_module" and submodules.get(n.target) in custom}
    count, metadata = analyse(nodes, opaque)
    steps: list[Step] = []
    reads: list[Read | None] = []
    for node in nodes[1:]:
        if node.op == "output":
            output = _output(_loader(node.args, {}, index))
            return Program(steps, output, modules, needs_mode, reads)
        name = None
        if node.op == "call_module":
            module = submodules.get(node.target)
            call = wrappers.get(module) if needs_mode else custom.get(module, wrappers.get(module))
            if call is None:
                return None
        elif node.op == "placeholder":  # an input the model is called without: its default
            call, name = _constant(node.args[0]), None
        elif node.op == "get_attr":  # a parameter or buffer read outside a layer (a class
            # token, a position embedding): read when the step runs, so a replaced or reloaded
            # tensor is seen
            call, name = _attribute(model, node.target), None
        elif node.op == "call_function":
            call, name = node.target, _owner(node, model)
        else:  # call_method
            call, name = _method(node.target), _owner(node, model)
        free = tuple(index[n] for n in freed.get(node, ()))
        args, kwargs = ((), {}) if node.op == "placeholder" else (node.args, node.kwargs)
        single = len(args) == 1 and not kwargs and isinstance(args[0], torch.fx.Node)
        if single and name is None:  # a layer on one value: the common case, called directly
            steps.append((call, index[args[0]], None, free, None))
        else:
            steps.append((call, -1, _loader(args, kwargs, index), free, name))
        same = reshape_check(node, metadata)
        source = index[node.args[0]] if same is not None else -1
        reads.append(None if node in metadata else (count[node] == 1, source, same))
        index[node] = len(index)
    return None


def _loader(args: tuple, kwargs: dict, index: dict[torch.fx.Node, int]):
    """``values -> (args, kwargs)`` with every graph node replaced by its value."""
    if not kwargs and not any(isinstance(a, list | tuple | dict | slice) for a in args):
        slots = [(index[a], None) if isinstance(a, torch.fx.Node) else (None, a) for a in args]
        return lambda values: ([v if i is None else values[i] for i, v in slots], {})

    def load(values: list) -> tuple:
        def get(n: torch.fx.Node) -> Any:
            return values[index[n]]

        return torch.fx.node.map_arg(args, get), torch.fx.node.map_arg(kwargs, get)

    return load


def _output(load: Callable[[list], tuple]) -> Callable[[list], Any]:
    return lambda values: load(values)[0][0]


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _attribute(model: nn.Module, name: str) -> Callable[[], Any]:
    owner, _, attribute = name.rpartition(".")
    if not owner:
        return lambda: getattr(model, name)
    return lambda: getattr(model.get_submodule(owner), attribute)


def _method(name: str) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, name)(*args, **kwargs)

    return call


def _format_at_run_time(node: torch.fx.Node, by_name: Mapping[str, torch.fx.Node]) -> None:
    """Make ``torch._assert(condition, message)`` whose message is an f-string of traced values
    (``f"got {h}"`` reads ``got Proxy(getitem_2)`` once traced) format it from the values it
    names when it fails: the node then reads them (:func:`_assert_formatted`)."""
    if node.op != "call_function" or node.target is not torch._assert or len(node.args) != 2:
        return
    message = node.args[1]
    if not isinstance(message, str):
        return
    parts = _PROXY.split(message)
    if len(parts) == 1 or any(name not in by_name for name in parts[1::2]):
        return
    node.target = _assert_formatted
    node.args = (node.args[0], tuple(parts), *(by_name[name] for name in parts[1::2]))


def _assert_formatted(condition: Any, parts: tuple[str, ...], *values: Any) -> None:
    """``torch._assert`` with the message ``parts`` (text, then a value's place, in turn)."""
    if not condition:
        texts = iter([str(v) for v in values])
        raise AssertionError("".join(p if i % 2 == 0 else next(texts) for i, p in enumerate(parts)))


def _owner(node: torch.fx.Node, model: nn.Module) -> str:
    """Name of the module whose forward ``node`` belongs to, as the engine's stack names it."""
    stack = node.meta.get("nn_module_stack")
    if stack:
        return next(reversed(stack))
    return f"<root {type(model).__name__}>"
