"""Fixtures for the LRP tests: tiny float64 models in eval mode and seeded inputs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from prune.models import MLP, LeNet5, ResNetSmall, VGGSmall

SEEDS = [0, *(pytest.param(s, marks=pytest.mark.extended) for s in range(1, 8))]


@pytest.fixture(params=SEEDS)
def seed(request: pytest.FixtureRequest) -> int:
    """One seed by default, seven more under the ``extended`` marker."""
    return request.param


def _randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorms non-trivial statistics so that merging them is actually tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            c = m.num_features
            m.running_mean.copy_(
                torch.randn(c, generator=generator, dtype=m.running_mean.dtype) * 0.1
            )
            m.running_var.copy_(torch.rand(c, generator=generator, dtype=m.running_var.dtype) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=generator, dtype=m.weight.dtype) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=generator, dtype=m.bias.dtype) * 0.1)


def make_model(kind: str, seed: int = 0, bn_eps: float | None = None) -> nn.Module:
    """A tiny float64 model in eval mode: ``mlp``, ``lenet``, ``vgg`` (BatchNorm) or ``resnet``."""
    torch.manual_seed(seed)
    shape = (1, 16, 16)
    builders: dict[str, Callable[[], nn.Module]] = {
        "mlp": lambda: MLP(in_shape=shape, num_classes=3, hidden=(16, 8)),
        "lenet": lambda: LeNet5(in_shape=shape, num_classes=3, channels=(4, 6), hidden=8),
        "vgg": lambda: VGGSmall(in_shape=shape, num_classes=3, cfg=(4, "M", 6, "M"), hidden=8),
        "resnet": lambda: ResNetSmall(in_shape=shape, num_classes=3, widths=(4, 6)),
    }
    model = builders[kind]().double().eval()
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        _randomize_batchnorm(model, gen)
        if bn_eps is not None:
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                    m.eps = bn_eps
    return model


def make_input(seed: int = 0, batch: int = 3, shape: tuple[int, ...] = (1, 16, 16)) -> torch.Tensor:
    """Normalised-looking float64 inputs with both signs."""
    gen = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(batch, *shape, generator=gen, dtype=torch.float64)


def zero_biases(model: nn.Module) -> nn.Module:
    """Set every bias (and BatchNorm shift) to zero, in place."""
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.zero_()
    return model


MODEL_KINDS = ["mlp", "lenet", "vgg", "resnet"]


@pytest.fixture(params=MODEL_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each tiny model kind in turn."""
    return request.param


@pytest.fixture
def build() -> Callable[..., nn.Module]:
    """The tiny-model factory :func:`make_model`."""
    return make_model


@pytest.fixture
def inputs() -> Callable[..., torch.Tensor]:
    """The input factory :func:`make_input`."""
    return make_input


@pytest.fixture
def unbiased() -> Callable[[nn.Module], nn.Module]:
    """The in-place bias remover :func:`zero_biases`."""
    return zero_biases
