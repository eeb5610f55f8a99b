"""Transformer units: attention heads and MLP hidden neurons, found by structure and cut out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prune.pruning.groups import ChannelGroup

HEADS_OUT = "heads_out"
"""Submodule of an attention module whose output holds the heads' outputs ``(B, H, N, Dh)``."""


def _parameters_only_in(module: nn.Module, children: Sequence[str]) -> bool:
    """True when every parameter of ``module`` belongs to one of the named children (nothing
    else, such as a per-head bias table or a norm on the hidden width, would need cutting)."""
    return all(n.split(".", 1)[0] in children for n, _ in module.named_parameters())


def is_attention(module: nn.Module) -> bool:
    """Multi-head attention in the layout of :class:`prune.models.vit.Attention`.

    ``qkv`` (Linear ``dim -> 3 * heads * head_dim``, rows ordered ``(3, heads, head_dim)``),
    ``proj`` (Linear ``heads * head_dim -> dim``), int attributes ``heads`` and ``head_dim``,
    a ``heads_out`` module on the heads' outputs, and no parameters besides those of ``qkv``
    and ``proj``.
    """
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    heads, head_dim = getattr(module, "heads", None), getattr(module, "head_dim", None)
    return (
        isinstance(qkv, nn.Linear)
        and isinstance(proj, nn.Linear)
        and isinstance(heads, int)
        and isinstance(head_dim, int)
        and isinstance(getattr(module, HEADS_OUT, None), nn.Module)
        and qkv.out_features == 3 * heads * head_dim == 3 * proj.in_features
        and _parameters_only_in(module, ("qkv", "proj"))
    )


def is_mlp(module: nn.Module) -> bool:
    """A transformer block's MLP, ``fc2(act(fc1(x)))``: Linear ``fc1`` and ``fc2`` whose hidden
    widths match, and no parameters besides theirs (the activation acts element by element)."""
    fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
    return (
        isinstance(fc1, nn.Linear)
        and isinstance(fc2, nn.Linear)
        and fc1.out_features == fc2.in_features
        and _parameters_only_in(module, ("fc1", "fc2"))
    )


def _replace(linear: nn.Linear, name: str, value: Tensor) -> None:
    old = getattr(linear, name)
    setattr(linear, name, nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))


def keep_rows(linear: nn.Linear, rows: Tensor) -> None:
    """Keep the output units ``rows`` of ``linear`` (its weight rows and bias entries)."""
    _replace(linear, "weight", linear.weight.detach().index_select(0, rows))
    if linear.bias is not None:
        _replace(linear, "bias", linear.bias.detach().index_select(0, rows))
    linear.out_features = rows.numel()


def keep_columns(linear: nn.Linear, columns: Tensor) -> None:
    """Keep the input features ``columns`` of ``linear`` (its bias is unchanged)."""
    _replace(linear, "weight", linear.weight.detach().index_select(1, columns))
    linear.in_features = columns.numel()


def _index(keep: Sequence[int], width: int, what: str, device: torch.device) -> Tensor:
    keep = [int(i) for i in keep]
    if not keep or keep != sorted(set(keep)) or keep[0] < 0 or keep[-1] >= width:
        raise ValueError(
            f"{what}: keep must be sorted distinct indices in [0, {width}) and not empty, "
            f"got {keep[:10]}"
        )
    return torch.as_tensor(keep, dtype=torch.long, device=device)


def prune_heads(attention: nn.Module, keep: Sequence[int]) -> None:
    """Keep the heads ``keep`` of ``attention`` (current indices), in place.

    A head's q, k and v slices of ``qkv`` (rows) and its slice of ``proj``'s inputs (columns)
    are removed and ``heads`` is lowered; ``head_dim``, ``scale`` and the token width stay.
    Parameters are new tensors (build a new optimizer afterwards).
    """
    h, dh = attention.heads, attention.head_dim
    device = attention.qkv.weight.device
    index = _index(keep, h, "prune_heads", device)
    with torch.inference_mode(False), torch.no_grad():
        rows = torch.arange(3 * h * dh, device=device).view(3, h, dh)[:, index].flatten()
        columns = torch.arange(h * dh, device=device).view(h, dh)[index].flatten()
        keep_rows(attention.qkv, rows)
        keep_columns(attention.proj, columns)
    attention.heads = index.numel()


def prune_neurons(mlp: nn.Module, keep: Sequence[int]) -> None:
    """Keep the hidden neurons ``keep`` of ``mlp`` (current indices): rows of ``fc1``, columns
    of ``fc2``, in place. Parameters are new tensors."""
    index = _index(keep, mlp.fc1.out_features, "prune_neurons", mlp.fc1.weight.device)
    with torch.inference_mode(False), torch.no_grad():
        keep_rows(mlp.fc1, index)
        keep_columns(mlp.fc2, index)


@dataclass(frozen=True)
class UnitKind:
    """A kind of unit of transformer blocks, held by one module per block.

    Attributes:
        holder: what holds the units (for messages): "attention module", "MLP".
        matches: whether a module holds units of this kind.
        width: the number of units a matching module holds now.
        output: the submodule whose output holds the units (heads on axis 1 of ``heads_out``,
            neurons on the last axis of ``fc1``'s token features): where relevance, activations
            and gradients of a unit are read.
        cut: keep the listed units of a matching module, in place.
    """

    holder: str
    matches: Callable[[nn.Module], bool]
    width: Callable[[nn.Module], int]
    output: str
    cut: Callable[[nn.Module, Sequence[int]], None]


KINDS: dict[str, UnitKind] = {
    "heads": UnitKind("attention module", is_attention, lambda m: m.heads, HEADS_OUT, prune_heads),
    "neurons": UnitKind("MLP", is_mlp, lambda m: m.fc1.out_features, "fc1", prune_neurons),
}
"""The pruner targets that cut transformer units, by name."""


def kind_of(module: nn.Module) -> str | None:
    """The unit kind ``module`` holds ("heads", "neurons"), or None."""
    return next((name for name, kind in KINDS.items() if kind.matches(module)), None)


def unit_groups(model: nn.Module, target: str) -> list[ChannelGroup]:
    """One group per module of ``model`` that holds units of kind ``target``, in module order.

    A group's name (and its only producer) is the holding module: ``blocks.0.attn`` for heads,
    ``blocks.0.mlp`` for MLP neurons; its width is the current number of units.
    """
    if target not in KINDS:
        raise ValueError(f"unknown unit kind {target!r}; choose from {sorted(KINDS)}")
    kind = KINDS[target]
    return [
        ChannelGroup(name, (name,), kind.width(module))
        for name, module in model.named_modules()
        if kind.matches(module)
    ]


def output_names(groups: Sequence[ChannelGroup], target: str) -> dict[str, str]:
    """``{group name: module whose output holds its units}`` (``blocks.0.attn.heads_out``,
    ``blocks.0.mlp.fc1``): what an LRP pass records and what gradient criteria hook."""
    return {g.name: f"{g.name}.{KINDS[target].output}" for g in groups}


def cut_units(model: nn.Module, name: str, keep: Sequence[int]) -> None:
    """Keep the units ``keep`` (current indices) of the module ``name``, whatever its kind.

    Raises:
        ValueError: if ``name`` holds no transformer units or ``keep`` is out of range.
    """
    module = model.get_submodule(name)
    kind = kind_of(module)
    if kind is None:
        raise ValueError(f"{name!r} ({type(module).__name__}) holds no heads or MLP neurons")
    KINDS[kind].cut(module, keep)
