"""Layer groups of a search: which layers share one rule, and which groups can change the scores.

A group is named by patterns of qualified module names: a layer belongs to the group of a
pattern that names it or a module it lies in, whole names between the dots: ``attn.qkv`` finds
``blocks.0.attn.qkv``, ``blocks.1.attn.qkv``, ...; ``head`` finds ``head``; ``patch_embed`` finds
``patch_embed`` and ``patch_embed.proj`` (timm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from prune.errors import ConfigError
from prune.lrp.types import LINEAR_TYPES


def matches(name: str, pattern: str) -> bool:
    """The dotted ``pattern`` is a run of whole parts of the dotted ``name``."""
    parts, run = name.split("."), pattern.split(".")
    return any(parts[i : i + len(run)] == run for i in range(len(parts) - len(run) + 1))


def layer_groups(model: nn.Module, groups: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``{group: [qualified names]}``: the linear and convolutional layers of each group.

    Raises:
        ConfigError: a group that finds no such layer, or a layer that two groups claim.
    """
    layers = [name for name, m in model.named_modules() if isinstance(m, LINEAR_TYPES)]
    found: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for group, patterns in groups.items():
        names = [n for n in layers if any(matches(n, p) for p in patterns)]
        if not names:
            raise ConfigError(
                f"tune.space.groups.{group}={list(patterns)} names no linear or convolutional "
                f"layer of {type(model).__name__}; its layers are {layers}"
            )
        for name in names:
            if name in owner:
                raise ConfigError(
                    f"layer {name!r} is in tune.space.groups.{owner[name]} and "
                    f"tune.space.groups.{group}; give each layer one group"
                )
            owner[name] = group
        found[group] = names
    return found


def groups_before(
    model: nn.Module, example: Tensor, layers: Mapping[str, Sequence[str]], recorded: Sequence[str]
) -> list[str]:
    """The groups whose every layer runs before every ``recorded`` module in a forward pass.

    Relevance flows from the output back to the input, so the rule of such a layer is applied
    only after the relevance at the recorded modules (the units a criterion scores) is final:
    it cannot change a score. One forward pass of ``example`` gives the order of the calls.
    """
    order: dict[str, int] = {}
    wanted = {n for names in layers.values() for n in names} | set(recorded)
    handles = []
    for name, module in model.named_modules():
        if name in wanted:
            hook = _first_call(order, name)
            handles.append(module.register_forward_pre_hook(hook))
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(example)  # eval: no BatchNorm statistics change
    finally:
        for module, training in modes:
            module.training = training
        for handle in handles:
            handle.remove()
    first_recorded = min((order[n] for n in recorded if n in order), default=None)
    if first_recorded is None:
        return []
    return [
        group
        for group, names in layers.items()
        if all(order.get(n, -1) < first_recorded for n in names)
    ]


def _first_call(order: dict[str, int], name: str) -> Callable[[nn.Module, tuple], None]:
    """A forward pre-hook that notes when the module ``name`` is first called."""

    def hook(module: nn.Module, args: tuple) -> None:
        order.setdefault(name, len(order))

    return hook
