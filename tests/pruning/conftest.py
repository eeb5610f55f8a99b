"""Tiny float64 models and inputs for the pruning tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from prune.models import MLP, LeNet5, ResNetSmall, VGGSmall


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so BN shifts matter."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen, dtype=torch.float64))
            m.running_var.copy_(torch.rand(n, generator=gen, dtype=torch.float64) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=gen, dtype=torch.float64))
            m.bias.data.copy_(torch.randn(n, generator=gen, dtype=torch.float64))
    return model


BUILDERS = {
    "mlp": lambda: MLP(in_shape=(1, 4, 4), num_classes=3, hidden=(8, 6)),
    "lenet": lambda: LeNet5(in_shape=(1, 20, 20), num_classes=3, channels=(4, 6), hidden=8),
    "vgg": lambda: VGGSmall(in_shape=(1, 8, 8), num_classes=3, cfg=(4, "M", 6, "M"), hidden=8),
    "resnet": lambda: ResNetSmall(in_shape=(1, 8, 8), num_classes=3, widths=(4, 6), blocks=1),
}


def _build(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = BUILDERS[kind]().double().eval()
    with torch.no_grad():
        _randomise_batchnorm(model, torch.Generator().manual_seed(seed + 1))
    return model


def _sample(model: nn.Module, batch: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *model.in_shape, generator=gen, dtype=torch.float64)


@pytest.fixture
def build_model() -> Callable[..., nn.Module]:
    """Factory ``build_model(kind, seed=0)``: a tiny float64 model in eval mode ("mlp", "lenet",
    "vgg", "resnet")."""
    return _build


@pytest.fixture
def make_input() -> Callable[..., torch.Tensor]:
    """Factory ``make_input(model, batch=4, seed=0)``: random inputs from a local generator."""
    return _sample


@pytest.fixture
def tiny_mlp(seed: int) -> nn.Module:
    return _build("mlp", seed)


@pytest.fixture
def tiny_lenet(seed: int) -> nn.Module:
    return _build("lenet", seed)


@pytest.fixture
def tiny_vgg(seed: int) -> nn.Module:
    return _build("vgg", seed)


@pytest.fixture
def tiny_resnet(seed: int) -> nn.Module:
    return _build("resnet", seed)
