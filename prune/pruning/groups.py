"""Channel groups: producers whose output units are pruned together (Torch-Pruning DepGraph)."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import Tensor, nn

PRODUCER_TYPES = (nn.Conv2d, nn.Linear)
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class UnprunableModelError(ValueError):
    """The dependency graph cannot cut this model's units consistently; the message names the
    layer: a forward Torch-Pruning cannot trace, a grouped convolution, a concatenation."""


@dataclass(frozen=True)
class ChannelGroup:
    """Producers coupled by the dependency graph (conv -> BN -> conv, residual adds, flatten).

    Attributes:
        name: first producer of the group in ``named_modules()`` order; the group's key.
        producers: all coupled producers (Conv2d / Linear whose output units are cut together),
            in module order. One entry for a plain chain, several across a residual add.
        width: current number of output units of each producer.
    """

    name: str
    producers: tuple[str, ...]
    width: int


def example_input_for(model: nn.Module, example_input: Tensor | None = None) -> Tensor:
    """One dense sample on the model's device and dtype (built from ``model.in_shape`` if None)."""
    param = next(model.parameters(), None)
    if example_input is None:
        in_shape = getattr(model, "in_shape", None)
        if in_shape is None:
            raise ValueError(
                f"{type(model).__name__} has no in_shape attribute; pass example_input explicitly"
            )
        example_input = torch.zeros(1, *in_shape)
    if param is not None:
        example_input = example_input.to(device=param.device, dtype=param.dtype)
    return example_input[:1]


@contextlib.contextmanager
def tracing(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm must not update its statistics), grad on, mode restored afterwards.

    Torch-Pruning traces through autograd and leaves the model in eval mode; this context
    restores the previous mode, and lifts inference mode so that new parameters are normal
    tensors (``on_load_checkpoint`` may run under ``trainer.test``'s inference mode).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        model.train(was_training)


def output_layers(model: nn.Module, example_input: Tensor) -> list[nn.Module]:
    """Modules whose output is the model's output (the final classifier): never pruned."""
    outputs: dict[int, nn.Module] = {}
    alive: list[Tensor] = []  # keep outputs alive so that their ids stay unique

    def hook(module: nn.Module, _args: object, out: object) -> None:
        if isinstance(out, Tensor):
            alive.append(out)
            outputs.setdefault(
                id(out), module
            )  # innermost first: a Sequential returns the same tensor

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with tracing(model):
            out = model(example_input)
    finally:
        for h in handles:
            h.remove()
    return [outputs[id(out)]] if id(out) in outputs else []


def build_graph(model: nn.Module, example_input: Tensor) -> tp.DependencyGraph:
    """Trace ``model`` into a Torch-Pruning dependency graph (model mode is preserved).

    Raises:
        UnprunableModelError: for a grouped convolution other than a depthwise one (its
            groups would lose different numbers of channels), or a forward Torch-Pruning
            cannot trace (naming the op and the layer before it).
    """
    names = {m: n for n, m in model.named_modules() if n}
    for module, name in names.items():
        groups = getattr(module, "groups", 1)
        depthwise = (
            groups == getattr(module, "in_channels", 0) == getattr(module, "out_channels", 0)
        )
        if isinstance(module, CONV_TYPES) and groups > 1 and not depthwise:
            raise UnprunableModelError(
                f"{type(model).__name__} cannot be pruned by channels: {name!r} is a grouped "
                f"convolution ({module.in_channels} -> {module.out_channels} channels in "
                f"{groups} groups), which the dependency graph cannot cut consistently; plain "
                "and depthwise convolutions are supported"
            )
    with tracing(model):
        try:
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=example_input, verbose=False
            )
        except Exception as err:  # Torch-Pruning's own errors name no layer
            raise UnprunableModelError(_untraceable(model, names, err)) from err


def _untraceable(model: nn.Module, names: dict[nn.Module, str], err: Exception) -> str:
    """One line for a forward Torch-Pruning failed on: its op and the nearest layer before it."""
    node, tb = None, err.__traceback__
    while tb is not None:  # the graph node Torch-Pruning was mapping when it failed
        candidate = tb.tb_frame.f_locals.get("node")
        if isinstance(candidate, tp.dependency.Node):
            node = candidate
        tb = tb.tb_next
    where = ""
    if node is not None:
        seen, queue, layer = set(), deque([node]), None
        while queue and layer is None:  # breadth first towards the input
            current = queue.popleft()
            layer = names.get(current.module)
            seen.add(current)
            queue.extend(n for n in current.inputs if n not in seen)
        where = f" at {node.name}" + ("" if layer is None else f" (after layer {layer!r})")
    reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
    return (
        f"{type(model).__name__} cannot be pruned by channels: Torch-Pruning cannot trace its "
        f"forward{where}: {reason}"
    )


def is_producer_dep(graph: tp.DependencyGraph, dep: object) -> bool:
    """True when a group item cuts the *output* units of a Conv2d / Linear."""
    return isinstance(dep.target.module, PRODUCER_TYPES) and graph.is_out_channel_pruning_fn(
        dep.handler
    )


def find_groups(
    model: nn.Module, example_input: Tensor, graph: tp.DependencyGraph | None = None
) -> list[ChannelGroup]:
    """Prunable channel groups of ``model``, excluding the final classifier layer.

    Args:
        model: the (possibly already pruned) network.
        example_input: one dense input sample ``(1, *in_shape)``.
        graph: a dependency graph of ``model`` to reuse; traced when None.

    Returns:
        Groups in module order of their first producer.

    Raises:
        UnprunableModelError: for couplings whose producers do not share unit indices
            (concatenations), which our plans do not represent, and where
            :func:`build_graph` fails.
    """
    example_input = example_input_for(model, example_input)
    graph = graph if graph is not None else build_graph(model, example_input)
    order = {m: (i, n) for i, (n, m) in enumerate(model.named_modules())}
    ignored = output_layers(model, example_input)
    groups = []
    for tp_group in graph.get_all_groups(ignored_layers=ignored, root_module_types=PRODUCER_TYPES):
        producers = []
        for item in tp_group:
            if not is_producer_dep(graph, item.dep):
                continue
            if list(item.idxs) != list(item.root_idxs):
                raise UnprunableModelError(
                    f"{type(model).__name__} cannot be pruned by channels: "
                    f"{order[item.dep.target.module][1]!r} is coupled with shifted indices "
                    "(concatenation?); plans need producers that share unit indices"
                )
            producers.append(item.dep.target.module)
        producers = sorted(set(producers), key=lambda m: order[m][0])
        names = tuple(order[m][1] for m in producers)
        groups.append(ChannelGroup(names[0], names, len(tp_group[0].idxs)))
    return sorted(groups, key=lambda g: order[model.get_submodule(g.name)][0])


def prune_group(
    model: nn.Module, graph: tp.DependencyGraph, group: ChannelGroup, keep: list[int]
) -> None:
    """Physically remove the units of ``group`` not in ``keep`` (current indices), in place."""
    remove = sorted(set(range(group.width)) - set(keep))
    if not remove:
        return
    root = model.get_submodule(group.name)
    handler = graph.get_pruner_of_module(root).prune_out_channels
    with tracing(model):
        graph.get_pruning_group(root, handler, remove).prune(record_history=False)
