"""FLOPs of attention: the products are counted, also through scaled_dot_product_attention."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import prune.evaluation.flops  # noqa: F401  (registers the CPU attention formula)
from prune.models.vit import ViT


def _flops(model: torch.nn.Module) -> tuple[int, dict]:
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 28, 28))
    return counter.get_total_flops(), {
        str(k): v for k, v in counter.get_flop_counts()["Global"].items()
    }


def test_fused_attention_counts_as_its_products() -> None:
    torch.manual_seed(0)
    explicit = ViT((1, 28, 28), 10, dim=32, depth=2, heads=4).eval()
    fused = ViT((1, 28, 28), 10, dim=32, depth=2, heads=4, fused_attention=True).eval()
    tokens, dim, depth = 17, 32, 2
    products = depth * 2 * (2 * tokens * tokens * dim)  # q k^T and A v, 2 FLOPs per MAC
    total, by_op = _flops(explicit)
    assert by_op["aten.bmm"] == products  # the explicit products
    assert _flops(fused)[0] == total  # the fused op counts the same
