"""Average pooling by replication: the same values, gradients and relevance as the native pool."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune.lrp import COMPOSITES, Explainer, attribute
from prune.lrp.fast.pooling import avg_pool, replication_factors

GEOMETRIES = [
    ((2, 3, 1, 1), nn.AdaptiveAvgPool2d(7), (7, 7)),  # torchvision VGG at 32x32
    ((2, 3, 2, 3), nn.AdaptiveAvgPool2d((4, None)), (2, 1)),
    ((2, 3, 5), nn.AdaptiveAvgPool1d(10), (2,)),
    ((2, 3, 1, 2, 2), nn.AdaptiveAvgPool3d((3, 4, 2)), (3, 2, 1)),
    ((3, 2, 2), nn.AdaptiveAvgPool2d(6), (3, 3)),  # unbatched
]


@pytest.mark.parametrize(("shape", "pool", "factors"), GEOMETRIES)
def test_replication_equals_the_native_pool_and_its_gradient(shape, pool, factors) -> None:
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert replication_factors(pool, x) == factors
    native, ours = pool(x), avg_pool(pool, x)
    assert torch.equal(ours, native)
    weights = torch.randn_like(native)
    (g_native,) = torch.autograd.grad(native, x, weights)
    (g_ours,) = torch.autograd.grad(ours, x, weights)
    torch.testing.assert_close(g_ours, g_native, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "pool"),
    [
        ((2, 3, 2, 2), nn.AdaptiveAvgPool2d(3)),  # overlapping windows of two elements
        ((2, 3, 4, 4), nn.AdaptiveAvgPool2d(1)),  # a global average
        ((2, 3, 4, 4), nn.AdaptiveAvgPool2d(4)),  # the identity: left to the module
        ((2, 3, 2, 2), nn.AvgPool2d(1)),  # not adaptive
    ],
)
def test_pools_that_average_run_natively(shape, pool) -> None:
    x = torch.randn(*shape)
    assert replication_factors(pool, x) is None
    assert torch.equal(avg_pool(pool, x), pool(x))


def _vgg_like() -> nn.Module:
    """torchvision VGG's shape in small: features down to 1x1, a 3x3 adaptive pool, a classifier."""
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.AdaptiveAvgPool2d((3, 3)),
            nn.Flatten(),
            nn.Linear(8 * 9, 16),
            nn.ReLU(),
            nn.Linear(16, 4),
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("preset", sorted(COMPOSITES))
def test_relevance_is_the_same_with_the_native_pool(preset) -> None:
    """The broadcast pool (fast backend) against the module's own pool (reference backend)."""
    model = _vgg_like()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    record = ["3", "6", "8"]
    fast = attribute(model, x, None, preset, record=record)
    traced = Explainer(model, preset, record)  # the traced program calls the same rule
    for _ in range(2):
        res = traced(x, None)
        torch.testing.assert_close(res.input, fast.input, rtol=0, atol=0)
    assert traced.engine._program is not None
    assert replication_factors(model[6], torch.zeros(1, 8, 1, 1)) is not None
    slow = attribute(model, x, None, preset, record=record, backend="reference")
    torch.testing.assert_close(fast.input, slow.input, rtol=1e-10, atol=1e-12)
    for name in record:
        torch.testing.assert_close(fast.output[name], slow.output[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("preset", ["epsilon", "epsilon_plus_flat", "epsilon_gamma_box"])
def test_replicating_pool_matches_zennit(preset) -> None:
    from tests.lrp.test_zennit_oracle import ZENNIT, _assert_close, _zennit

    model = _vgg_like()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1, 3])
    names = ["0", "3", "6", "8"]
    ours = attribute(model, x, target, preset, record=names)
    out_rel = torch.zeros_like(ours.logits).scatter_(1, target[:, None], 1.0) * ours.logits
    rel, layers = _zennit(model, x, out_rel, ZENNIT[preset]([]), names)
    _assert_close(ours.input, rel, f"{preset} input")
    for name in names:
        _assert_close(ours.output[name], layers[name], f"{preset} {name}")
