"""Groups of layer types that composites and rules refer to, and the torch equivalents of some
modules of timm and torchvision (matched by name, without importing those libraries)."""

from __future__ import annotations

from torch import nn

LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
AVGPOOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
MAXPOOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
#: Activations whose ordinary gradient already is the pass rule in the gradient form
#: ``R = a * g`` (positively homogeneous: ``f(x) = f'(x) * x``).
HOMOGENEOUS_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU)
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ReLU6,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.PReLU,
)
#: Leaf modules that return their input as it is (in eval mode).
IDENTITY_TYPES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
#: Leaf modules that only move values (in eval mode): their outputs alias their inputs.
DATA_MOVEMENT_TYPES: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten, *IDENTITY_TYPES)
#: Leaf modules whose ordinary gradient is already a correct LRP rule: pure data movement
#: and max-pooling (winner takes all).
TRANSPARENT_TYPES: tuple[type[nn.Module], ...] = (*DATA_MOVEMENT_TYPES, *MAXPOOL_TYPES)

#: Classes of libraries the core does not import (torchvision, timm), by defining module and
#: class name, with the torch class each one computes the same as (see
#: :func:`torch_equivalent`). Drop layers (stochastic depth, drop path, drop block) zero at random
#: in training and are the identity in eval mode, as dropout; the explain pass runs in eval mode
#: (:class:`~prune.lrp.Explainer`). timm's activations compute the elementwise function of their
#: torch twin; its GELU and Mish approximations (``GELUTanh``, ``QuickGELU``, ``HardMish``) map
#: to the function they approximate. Both libraries stay unimported: torchvision would add more
#: import time to :mod:`prune.lrp` than it has without it, and timm is optional.
EQUIVALENT_TYPES: dict[tuple[str, str], type[nn.Module]] = {
    ("torchvision.ops.stochastic_depth", "StochasticDepth"): nn.Dropout,
    ("torchvision.ops.drop_block", "DropBlock2d"): nn.Dropout,
    ("torchvision.ops.drop_block", "DropBlock3d"): nn.Dropout,
    ("timm.layers.drop", "DropPath"): nn.Dropout,
    ("timm.layers.drop", "DropBlock2d"): nn.Dropout,
    ("timm.layers.activations", "Swish"): nn.SiLU,
    ("timm.layers.activations", "Mish"): nn.Mish,
    ("timm.layers.activations", "Sigmoid"): nn.Sigmoid,
    ("timm.layers.activations", "Tanh"): nn.Tanh,
    ("timm.layers.activations", "HardSwish"): nn.Hardswish,
    ("timm.layers.activations", "HardSigmoid"): nn.Hardsigmoid,
    ("timm.layers.activations", "HardMish"): nn.Mish,
    ("timm.layers.activations", "GELU"): nn.GELU,
    ("timm.layers.activations", "GELUTanh"): nn.GELU,
    ("timm.layers.activations", "QuickGELU"): nn.GELU,
    ("timm.layers.activations_me", "SwishMe"): nn.SiLU,
    ("timm.layers.activations_me", "MishMe"): nn.Mish,
    ("timm.layers.activations_me", "HardSwishMe"): nn.Hardswish,
    ("timm.layers.activations_me", "HardSigmoidMe"): nn.Hardsigmoid,
    ("timm.layers.activations_me", "HardMishMe"): nn.Mish,
}


def torch_equivalent(module: nn.Module) -> type[nn.Module] | None:
    """The torch class that ``module`` computes the same as, by :data:`EQUIVALENT_TYPES`, or None.

    A class is known by its defining module and qualified name (the name pickle stores), tried
    for ``type(module)`` and then its bases, so a subclass of timm's ``DropPath`` matches too.
    Nothing is imported: ``torch_equivalent(timm.layers.DropPath())`` is ``nn.Dropout``.
    """
    for cls in type(module).__mro__:
        twin = EQUIVALENT_TYPES.get((cls.__module__, cls.__qualname__))
        if twin is not None:
            return twin
    return None
