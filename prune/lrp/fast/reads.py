"""Which values of a traced graph are read by one op alone, and which only reshape another.

absLRP rescales the relevance of every layer input to unit L1 per sample. Where a tensor is read
by one op alone and comes from a node that rescales its own inputs, that rescale changes nothing:
its node's backward is linear in the gradient, so a per-sample factor on the gradient reaches its
inputs unchanged and their own rescales undo it. A traced graph (:mod:`prune.lrp.fast.program`)
says which tensors are read once; the pass's state (:meth:`prune.lrp.state.RunState.read_once`)
combines that with which tensors such nodes made, and the rules' nodes skip the rescales that
change nothing: the same relevance up to float rounding, in fewer elementwise ops.

A value counts as read by every op that takes it as an argument, as often as it does (``x * x``
reads ``x`` twice); reading its shape, size or number of dimensions does not count. A *reshape*
(a view, transpose, permutation, selection or constant multiple of one tensor, sample for sample)
passes a gradient factor through unchanged, so it continues a chain of single reads.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.fx
from torch import Tensor

#: ``(source, value) -> whether value`` keeps ``source``'s samples on its first axis
SameSamples = Callable[[Tensor, Tensor], bool]

_METADATA_METHODS = frozenset({"size", "dim", "ndimension", "numel", "get_device"})
_RESHAPE_METHODS = frozenset({"reshape", "view", "flatten", "contiguous", "unsqueeze"})
_RESHAPE_FUNCTIONS = frozenset({torch.reshape, torch.flatten, torch.unsqueeze})
_PERMUTE = frozenset({"transpose", "permute", torch.transpose, torch.permute})
_SCALE = frozenset({"mul", "div", operator.mul, operator.truediv, torch.mul, torch.div})


def analyse(
    nodes: list[torch.fx.Node], opaque: set[torch.fx.Node]
) -> tuple[dict[torch.fx.Node, int], set[torch.fx.Node]]:
    """How many times each node's value is read by the graph's ops, and which nodes compute with
    shapes, not values (``x.shape``, ``x.size(0)``, and what is computed from those alone).

    A node in ``opaque`` (a layer whose inside is not one op) counts as reading each of its
    inputs twice: what it does inside is unknown.
    """
    metadata: set[torch.fx.Node] = set()
    for node in nodes:
        if _is_metadata(node, metadata):
            metadata.add(node)
    count = dict.fromkeys(nodes, 0)
    for node in nodes:
        if node in metadata:
            continue
        seen: list[torch.fx.Node] = []
        torch.fx.node.map_arg((node.args, node.kwargs), seen.append)
        for used in seen:
            count[used] += 2 if node in opaque else 1
    return count, metadata


def reshape_check(node: torch.fx.Node, metadata: set[torch.fx.Node]) -> SameSamples | None:
    """For a node that reshapes one tensor sample for sample (a view, transpose, selection or
    constant multiple of its first argument, the only value among its inputs), the check its
    values must pass at run time; None for any other node."""
    if node.op not in ("call_method", "call_function") or not node.args:
        return None
    source, target = node.args[0], node.target
    seen: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), seen.append)
    if [n for n in seen if n not in metadata] != [source]:  # x * x reads x twice
        return None
    if target in _RESHAPE_METHODS or target in _RESHAPE_FUNCTIONS or target in _SCALE:
        return _same_first_axis
    if target in _PERMUTE:
        dims = [a for a in node.args[1:] if isinstance(a, int)]
        if len(dims) != len(node.args) - 1 or not dims:
            return None
        return _keeps_axis0(dims, permute=target in ("permute", torch.permute))
    if target is operator.getitem:
        index = node.args[1]
        first_whole = isinstance(index, tuple) and bool(index) and index[0] == slice(None)
        if first_whole and all(isinstance(i, int | slice) for i in index[1:]):
            return _same_first_axis
    return None


def _same_first_axis(source: Tensor, value: Tensor) -> bool:
    return value.dim() > 0 and source.dim() > 0 and value.shape[0] == source.shape[0]


def _keeps_axis0(dims: list[int], permute: bool) -> SameSamples:
    def check(source: Tensor, value: Tensor) -> bool:
        n = source.dim()
        if n == 0 or value.dim() == 0 or value.shape[0] != source.shape[0]:
            return False
        if permute:  # the new first axis is dims[0]
            return dims[0] % n == 0
        return all(d % n != 0 for d in dims)  # a transpose that leaves the first axis

    return check


def _is_metadata(node: torch.fx.Node, known: set[torch.fx.Node]) -> bool:
    if node.op == "call_function" and node.target is getattr:
        return True
    if node.op == "call_method" and node.target in _METADATA_METHODS:
        return True
    inputs = node.all_input_nodes
    return (
        node.op == "call_function"
        and getattr(node.target, "__module__", None) == "_operator"
        and bool(inputs)
        and all(n in known for n in inputs)
    )
