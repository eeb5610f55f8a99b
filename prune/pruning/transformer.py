"""Transformer units: attention heads and MLP hidden neurons, found by structure and cut out.

Two attention layouts hold heads that can be cut: :class:`prune.models.vit.Attention` (head
count ``heads``) and timm's ``Attention`` (``num_heads``, with ``attn_dim``), both with an
explicit ``qkv`` projection. Two MLP layouts hold neurons: :class:`prune.models.vit.MLP` and
timm's ``Mlp`` (``fc1``, ``act``, ``fc2``). Pruning heads by a criterion also needs each head's
output, read at the attention's ``heads_out``; timm's ``Attention`` gets one from
:func:`prune.pruning.heads_view.expose_heads`. Asked for the heads of a model whose attention
has none (``nn.MultiheadAttention``), :func:`unit_groups` stops with one line naming the
attention's type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prune.pruning.groups import ChannelGroup
from prune.pruning.heads_view import HEADS_OUT, HeadsView, heads_out_name

HEAD_COUNTS = ("heads", "num_heads")
"""Attributes that hold an attention module's number of heads: prune.models.vit's, timm's."""


def _parameters_only_in(module: nn.Module, children: Sequence[str]) -> bool:
    """True when every parameter of ``module`` belongs to one of the named children (nothing
    else, such as a per-head bias table or a norm on the hidden width, would need cutting)."""
    return all(n.split(".", 1)[0] in children for n, _ in module.named_parameters())


def _no_norm(module: nn.Module) -> bool:
    """True when ``module`` has no ``norm`` over its concatenated units (timm's ``scale_norm``
    and ``scale_mlp_norm``), or only an identity there (a :class:`HeadsView` included): a norm
    over all units, even one without parameters, would change when some of them are cut."""
    norm = getattr(module, "norm", None)
    return norm is None or isinstance(norm, nn.Identity | HeadsView)


def head_count(module: nn.Module) -> str | None:
    """The attribute of ``module`` that holds its number of heads (``heads``, ``num_heads``),
    or None."""
    return next((a for a in HEAD_COUNTS if isinstance(getattr(module, a, None), int)), None)


def heads_of(attention: nn.Module) -> int:
    """The number of heads of an attention module (see :func:`is_attention`)."""
    return getattr(attention, head_count(attention))


def is_attention(module: nn.Module) -> bool:
    """Multi-head attention whose heads can be cut, in the layout of
    :class:`prune.models.vit.Attention` or of timm's ``Attention``.

    ``qkv`` (Linear ``dim -> 3 * heads * head_dim``, rows ordered ``(3, heads, head_dim)``),
    ``proj`` (Linear ``heads * head_dim -> dim``), int attributes ``head_dim`` and ``heads``
    (timm: ``num_heads``, and ``attn_dim == num_heads * head_dim``, the width its forward
    reshapes the heads' outputs to), no norm over the concatenated heads, and no parameters
    besides those of ``qkv``, ``proj`` and the per-head ``q_norm``/``k_norm`` (shared by all
    heads, so untouched by a cut).
    """
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    count, head_dim = head_count(module), getattr(module, "head_dim", None)
    if count is None or not isinstance(head_dim, int):
        return False
    width = getattr(module, count) * head_dim
    return (
        isinstance(qkv, nn.Linear)
        and isinstance(proj, nn.Linear)
        and qkv.out_features == 3 * width
        and proj.in_features == width
        and (count == "heads" or getattr(module, "attn_dim", None) == width)
        and _no_norm(module)
        and _parameters_only_in(module, ("qkv", "proj", "q_norm", "k_norm"))
    )


def is_mlp(module: nn.Module) -> bool:
    """A transformer block's MLP, ``fc2(act(fc1(x)))`` (prune.models.vit's, timm's ``Mlp``):
    Linear ``fc1`` and ``fc2`` whose hidden widths match, no norm over the hidden width, and no
    parameters besides theirs (the activation and dropouts act element by element)."""
    fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
    return (
        isinstance(fc1, nn.Linear)
        and isinstance(fc2, nn.Linear)
        and fc1.out_features == fc2.in_features
        and _no_norm(module)
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
    are removed and the head count (``heads``; timm: ``num_heads`` and ``attn_dim``) is
    lowered; ``head_dim``, ``scale`` and the token width stay. Parameters are new tensors
    (build a new optimizer afterwards).
    """
    h, dh = heads_of(attention), attention.head_dim
    device = attention.qkv.weight.device
    index = _index(keep, h, "prune_heads", device)
    with torch.inference_mode(False), torch.no_grad():
        rows = torch.arange(3 * h * dh, device=device).view(3, h, dh)[:, index].flatten()
        columns = torch.arange(h * dh, device=device).view(h, dh)[index].flatten()
        keep_rows(attention.qkv, rows)
        keep_columns(attention.proj, columns)
    setattr(attention, head_count(attention), index.numel())
    if isinstance(getattr(attention, "attn_dim", None), int):
        attention.attn_dim = index.numel() * dh


def prune_neurons(mlp: nn.Module, keep: Sequence[int]) -> None:
    """Keep the hidden neurons ``keep`` of ``mlp`` (current indices): rows of ``fc1``, columns
    of ``fc2``, in place. Parameters are new tensors."""
    index = _index(keep, mlp.fc1.out_features, "prune_neurons", mlp.fc1.weight.device)
    with torch.inference_mode(False), torch.no_grad():
        keep_rows(mlp.fc1, index)
        keep_columns(mlp.fc2, index)


def _readable(name: str, module: nn.Module) -> None:
    """The default of ``UnitKind.unreadable``: a criterion can read every unit."""
    return None


@dataclass(frozen=True)
class UnitKind:
    """A kind of unit of transformer blocks, held by one module per block.

    Attributes:
        holder: what holds the units (for messages): "attention module", "MLP".
        matches: whether a module holds units of this kind.
        width: the number of units a matching module holds now.
        output: for a matching module, the path of its submodule whose output holds the units
            (heads on axis 1 of ``heads_out``, neurons on the last axis of ``fc1``'s token
            features): where relevance, activations and gradients of a unit are read.
        cut: keep the listed units of a matching module, in place.
        unreadable: for a module called ``name``, why its units of this kind cannot be
            pruned by a criterion (one line), or None.
    """

    holder: str
    matches: Callable[[nn.Module], bool]
    width: Callable[[nn.Module], int]
    output: Callable[[nn.Module], str | None]
    cut: Callable[[nn.Module, Sequence[int]], None]
    unreadable: Callable[[str, nn.Module], str | None] = _readable


def _type_name(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def unreadable_heads(name: str, module: nn.Module) -> str | None:
    """Why the heads of ``module`` (called ``name``) cannot be pruned by a criterion, or None.

    A criterion reads each head's relevance, activations or gradients at the output of the
    attention's ``heads_out`` (:class:`prune.models.vit.Attention`; timm's ``Attention`` once
    :func:`prune.pruning.heads_view.expose_heads` gave it one); ``nn.MultiheadAttention`` keeps
    its heads inside one fused op.
    """
    if isinstance(module, nn.MultiheadAttention):
        return (
            f"{name!r} is a {_type_name(module)}, whose heads run inside one fused op with no "
            f"per-head output to read or projection to cut; write it out first "
            f"(model=torchvision model.explicit_attention=true, or "
            f"prune.models.explicit_attention.explicit_attention(model))"
        )
    if is_attention(module) and heads_out_name(module) is None:
        return (
            f"{name!r} is a {_type_name(module)} without a {HEADS_OUT!r} module on its heads' "
            f"outputs, where a criterion reads each head's relevance, activations or gradients; "
            f"pruning heads needs the attention of prune.models.ViT (model=vit) or timm's"
        )
    return None


KINDS: dict[str, UnitKind] = {
    "heads": UnitKind(
        "attention module", is_attention, heads_of, heads_out_name, prune_heads, unreadable_heads
    ),
    "neurons": UnitKind(
        "MLP", is_mlp, lambda m: m.fc1.out_features, lambda m: "fc1", prune_neurons
    ),
}
"""The pruner targets that cut transformer units, by name."""


def kind_of(module: nn.Module) -> str | None:
    """The unit kind ``module`` holds ("heads", "neurons"), or None."""
    return next((name for name, kind in KINDS.items() if kind.matches(module)), None)


def unit_groups(model: nn.Module, target: str) -> list[ChannelGroup]:
    """One group per module of ``model`` that holds units of kind ``target``, in module order.

    A group's name (and its only producer) is the holding module: ``blocks.0.attn`` for heads,
    ``blocks.0.mlp`` for MLP neurons; its width is the current number of units.

    Raises:
        ValueError: for an unknown ``target``, or, in one line naming the module and its type,
            for units that a criterion cannot read (:func:`unreadable_heads`).
    """
    if target not in KINDS:
        raise ValueError(f"unknown unit kind {target!r}; choose from {sorted(KINDS)}")
    kind = KINDS[target]
    groups = []
    for name, module in model.named_modules():
        if (reason := kind.unreadable(name, module)) is not None:
            raise ValueError(reason)
        if kind.matches(module):
            groups.append(ChannelGroup(name, (name,), kind.width(module)))
    return groups


def output_names(model: nn.Module, groups: Sequence[ChannelGroup], target: str) -> dict[str, str]:
    """``{group name: module whose output holds its units}`` (``blocks.0.attn.heads_out``,
    timm's ``blocks.0.attn.norm.heads_out``, ``blocks.0.mlp.fc1``): what an LRP pass records
    and what gradient criteria hook."""
    output = KINDS[target].output
    return {g.name: f"{g.name}.{output(model.get_submodule(g.name))}" for g in groups}


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
