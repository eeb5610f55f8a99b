"""Fixtures for the explanation metrics: hand-made models whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

SIDE = 8  # images are (1, SIDE, SIDE)
BLOCK = (slice(2, 5), slice(3, 6))  # the 3x3 block that decides the label


class BlockNet(nn.Module):
    """Hand-set ReLU net: class 1 iff the block's sum is positive, class 0 otherwise.

    ``h = relu([s, -s])`` with ``s`` the sum of the block pixels, ``logits = 4 * [h_1, h_0]``;
    pixels outside the block have zero weight, so every faithful explanation puts all
    its relevance in the block.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(SIDE * SIDE, 2)
        self.relu = nn.ReLU()
        self.out = nn.Linear(2, 2)
        with torch.no_grad():
            w = torch.zeros(SIDE, SIDE)
            w[BLOCK] = 1.0
            self.hidden.weight.copy_(torch.stack([w.flatten(), -w.flatten()]))
            self.hidden.bias.zero_()
            self.out.weight.copy_(torch.tensor([[0.0, 4.0], [4.0, 0.0]]))
            self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.hidden(self.flatten(x))))


def block_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with N(0, 1) noise; the block holds +-1.5 plus noise, its sign is the label."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, SIDE, SIDE, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=g)
    x[:, 0, BLOCK[0], BLOCK[1]] += (2.0 * y.double() - 1.0).view(-1, 1, 1) * 1.5
    return x, y


@pytest.fixture(params=[0])
def seed(request: pytest.FixtureRequest) -> int:
    torch.manual_seed(request.param)
    return request.param


@pytest.fixture
def block_net() -> nn.Module:
    return BlockNet().double().eval()


@pytest.fixture
def block_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return block_data(64)


@pytest.fixture
def linear_net() -> nn.Module:
    """Linear 2-class model on (1, 4, 4) images with distinct weights, no bias."""
    g = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False)).double().eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(2, 16, generator=g, dtype=torch.float64))
    return net
