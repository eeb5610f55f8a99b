"""The engine's ``unbind``: autograd's gradient, laid out as the unbound tensor."""

from __future__ import annotations

import pytest
import torch

from prune.lrp.fast.unbind import unbind


@pytest.mark.parametrize("used", [(0, 1, 2), (2,), (0, 2)])
def test_unbind_gives_autograds_gradient_in_the_inputs_layout(used) -> None:
    torch.manual_seed(0)
    out = torch.randn(2, 5, 3 * 4 * 6, dtype=torch.float64, requires_grad=True)
    qkv = out.reshape(2, 5, 3, 4, 6).permute(2, 0, 3, 1, 4)  # attention's q, k, v
    weights = [torch.randn(2, 4, 5, 6, dtype=torch.float64) for _ in range(3)]
    ours = unbind(qkv, 0)
    assert all(torch.equal(a, b) for a, b in zip(ours, qkv.unbind(0), strict=True))
    got = torch.autograd.grad(
        sum((p * w).sum() for i, (p, w) in enumerate(zip(ours, weights, strict=True)) if i in used),
        qkv,
    )[0]
    want = torch.autograd.grad(
        sum(
            (p * w).sum()
            for i, (p, w) in enumerate(zip(qkv.unbind(0), weights, strict=True))
            if i in used
        ),
        qkv,
    )[0]
    assert torch.equal(got, want)
    assert got.stride() == qkv.stride()  # back through permute and reshape without a copy


def test_unbind_of_a_strided_slice_and_a_negative_dim() -> None:
    base = torch.randn(4, 6, 5, dtype=torch.float64, requires_grad=True)
    t = base[:, ::2]  # not dense: its gradient is laid out contiguously
    weights = torch.randn(4, 3, 5, dtype=torch.float64)
    got = torch.autograd.grad(
        sum((p * w).sum() for p, w in zip(unbind(t, -1), weights.unbind(-1), strict=True)), base
    )[0]
    want = torch.autograd.grad((t * weights).sum(), base)[0]
    assert torch.equal(got, want)
