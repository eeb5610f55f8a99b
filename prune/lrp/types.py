"""Groups of layer types that composites and rules refer to."""

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
#: Leaf modules that only move values (in eval mode): their outputs alias their inputs.
DATA_MOVEMENT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
#: Leaf modules whose ordinary gradient is already a correct LRP rule: pure data movement
#: and max-pooling (winner takes all).
TRANSPARENT_TYPES: tuple[type[nn.Module], ...] = (*DATA_MOVEMENT_TYPES, *MAXPOOL_TYPES)
