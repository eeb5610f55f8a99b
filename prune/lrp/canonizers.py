"""Canonizers: rewrite a model into an equivalent form the rules apply to, without touching it.

Zennit's canonizers overwrite parameters and write them back afterwards. Ours never mutate the
model: :class:`MergeBatchNorm` computes the merged weight and bias of a ``linear -> BatchNorm``
pair and hands them to the engine, which uses them in the linear layer's rule and runs the
BatchNorm as the identity. Restoring is therefore exact by construction (bit-identical
``state_dict``, same ``Parameter`` objects, optimizer references intact).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prune.lrp.types import BATCHNORM_TYPES, LINEAR_TYPES


class Canonizer:
    """Base class: find module patterns and describe how the engine should treat them.

    A canonizer answers two questions, each with nothing by default: which BatchNorms to merge
    into the layer before them (:meth:`merges`), and which modules to run with another, equivalent
    forward (:meth:`replacements`, for example an attention module written out as explicit
    products whose functional ops then get the composite's rules).
    """

    def merges(self, leaves: Sequence[nn.Module]) -> dict[nn.Module, nn.Module]:
        """``{batchnorm: linear}`` pairs to merge (the BatchNorm runs as identity), given the
        model's leaf modules in registration order."""
        return {}

    def replacements(
        self, modules: Sequence[tuple[str, nn.Module, bool]]
    ) -> dict[nn.Module, Callable[..., Any]]:
        """``{module: forward}``: modules that run ``forward`` instead of their own during the
        pass, as containers (their functional ops get the composite's ``op_map`` rules), given
        ``(name, module, is_leaf)`` of every module. ``forward`` must compute the same output;
        it may be an ``nn.Module`` stand-in, whose own layers then get rules like the model's
        (named ``<name>.<sub>``). A traced program (:mod:`prune.lrp.fast.program`) runs the
        stand-in's layers without its forward: a stand-in that points its layers at the
        replaced module's parameters in its forward does so in a ``bind()`` method too, which
        the engine calls before each pass of a program."""
        return {}


class MergeBatchNorm(Canonizer):
    """Merge every BatchNorm that directly follows a Linear/Conv layer into that layer.

    Pairs are found in registration order of the leaves (as Zennit's ``SequentialMergeBatchNorm``)
    and then *checked during the forward*: if a merged BatchNorm receives anything other than
    its partner's output, the engine raises instead of computing a wrong explanation.
    BatchNorms with batch statistics in eval mode (``track_running_stats=False``) stay unmerged.
    A BatchNorm with layers inside (timm's ``BatchNormAct2d``) is merged as its BatchNorm part
    (:func:`norm_of`); its activation still runs with its rule.
    """

    def merges(self, leaves: Sequence[nn.Module]) -> dict[nn.Module, nn.Module]:
        """``{batchnorm: linear}`` for each ``linear -> BatchNorm`` pair of consecutive leaves."""
        pairs: dict[nn.Module, nn.Module] = {}
        previous: nn.Module | None = None
        for leaf in leaves:
            if (
                isinstance(leaf, BATCHNORM_TYPES)
                and isinstance(previous, LINEAR_TYPES)
                and leaf.running_var is not None
                and previous.weight.shape[0] == leaf.num_features
            ):
                pairs[leaf] = previous
            previous = leaf
        return pairs


def norm_of(module: nn.Module) -> nn.Module | None:
    """The BatchNorm of a BatchNorm with layers inside, as a leaf; None for any other module.

    timm's ``BatchNormAct2d`` is a ``BatchNorm2d`` whose forward normalises and then runs its
    children (``drop``, ``act``) in order. The engine runs such a module as its BatchNorm, then
    its children: the BatchNorm part is this leaf, a plain BatchNorm that shares the module's
    parameter and buffer dictionaries (so it always reads the current weights and statistics)
    and is merged or given a rule like any BatchNorm.
    """
    if not isinstance(module, BATCHNORM_TYPES) or not module._modules:
        return None
    base = next(cls for cls in type(module).__mro__ if cls in BATCHNORM_TYPES)
    norm = base.__new__(base)
    nn.Module.__init__(norm)
    shared = ("_parameters", "_buffers", "num_features", "eps", "momentum", "affine")
    norm.__dict__.update({key: module.__dict__[key] for key in shared})
    norm.track_running_stats = module.track_running_stats
    return norm.eval()


def batchnorm_affine(bn: nn.Module, like: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` of an eval-mode BatchNorm, ``y = x * scale + shift``,
    detached, in ``like``'s dtype and device."""
    scale = torch.rsqrt(bn.running_var.to(like) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.to(like) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def merged_weight_bias(linear: nn.Module, bn: nn.Module) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``bn(linear(x))`` as one layer (eval mode statistics), detached."""
    with torch.no_grad():
        weight = linear.weight.detach()
        scale, shift = batchnorm_affine(bn, weight)
        if linear.bias is not None:
            shift = shift + linear.bias.detach() * scale
        merged = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return merged, shift
