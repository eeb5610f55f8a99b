"""Transformer rules on a small ViT: AttnLRP and CP-LRP against LXT's explicit rules (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prune.lrp import attribute
from prune.models.vit import ViT

EPS = 1e-15  # LXT stabilises with +eps, this engine with eps * sign: equal as eps -> 0


def _vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = ViT((1, 8, 8), num_classes=3, patch_size=4, dim=8, depth=2, heads=2).double().eval()
    with torch.no_grad():  # non-trivial LayerNorm affine maps and a class token
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        model.cls_token.normal_(0, 0.5)
    return model


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_vit_fast_and_reference_backends_agree(composite) -> None:
    model, x = _vit(), torch.randn(4, 1, 8, 8, dtype=torch.float64)
    fast = attribute(model, x, torch.tensor([0, 1, 2, 0]), composite, record=["blocks.0.mlp.fc1"])
    ref = attribute(
        model, x, torch.tensor([0, 1, 2, 0]), composite, ["blocks.0.mlp.fc1"], "reference"
    )
    assert _relative(fast.input, ref.input) < 1e-12
    assert fast.output["blocks.0.mlp.fc1"].shape == (4, 5, 16)  # tokens x units


class _Identity(torch.autograd.Function):
    """The identity rule (relevance passes unchanged) around an elementwise function."""

    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


def _lxt_forward(model: nn.Module, x: torch.Tensor, held_constant: bool) -> torch.Tensor:
    """The ViT's forward written with LXT's explicit functional rules."""
    lf = pytest.importorskip("lxt.explicit.functional")
    p = model.patch_embed
    patches = F.unfold(x, p.kernel_size, stride=p.stride).transpose(1, 2)  # (B, N, C k k)
    h = lf.linear_epsilon(patches, p.weight.flatten(1), p.bias, EPS)
    h = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), h], 1)
    h = lf.add2(h, model.pos_embed, False, EPS)
    for block in model.blocks:
        a = block.attn
        n1 = lf.layer_norm_grad_fn.apply(h, block.norm1.weight, block.norm1.bias, 1e-5, EPS)
        b, n, _ = n1.shape
        qkv = lf.linear_epsilon(n1, a.qkv.weight, a.qkv.bias, EPS)
        q, k, v = qkv.reshape(b, n, 3, a.heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = lf.mul2(lf.matmul(q, k.transpose(-2, -1), False, EPS), a.scale)
        attn = lf.softmax(scores, -1)
        if held_constant:  # CP-LRP: A @ v with A as the weights of a linear map of v
            out = torch.stack(
                [
                    torch.stack(
                        [
                            lf.linear_epsilon(v[i, j].T, attn[i, j].detach(), None, EPS).T
                            for j in range(a.heads)
                        ]
                    )
                    for i in range(b)
                ]
            )
        else:
            out = lf.matmul(attn, v, False, EPS)
        out = out.transpose(1, 2).reshape(b, n, -1)
        h = lf.add2(h, lf.linear_epsilon(out, a.proj.weight, a.proj.bias, EPS), False, EPS)
        m = block.mlp
        n2 = lf.layer_norm_grad_fn.apply(h, block.norm2.weight, block.norm2.bias, 1e-5, EPS)
        hidden = _Identity.apply(lf.linear_epsilon(n2, m.fc1.weight, m.fc1.bias, EPS), F.gelu)
        h = lf.add2(h, lf.linear_epsilon(hidden, m.fc2.weight, m.fc2.bias, EPS), False, EPS)
    h = lf.layer_norm_grad_fn.apply(h, model.norm.weight, model.norm.bias, 1e-5, EPS)
    return lf.linear_epsilon(h[:, 0], model.head.weight, model.head.bias, EPS)


@pytest.mark.parametrize(("composite", "held_constant"), [("attnlrp", False), ("cp_lrp", True)])
@pytest.mark.parametrize("seed", [0, 1])
def test_vit_relevance_matches_lxt(composite, held_constant, seed) -> None:
    from prune.lrp.composites import get_composite

    model = _vit(seed)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([2, 0, 1])
    ours = attribute(model, x, target, get_composite(composite, epsilon=EPS, stabilizer=EPS))
    xx = x.clone().requires_grad_()
    logits = _lxt_forward(model, xx, held_constant)
    torch.testing.assert_close(logits.detach(), ours.logits, rtol=1e-12, atol=1e-12)
    out_rel = torch.zeros_like(logits).scatter_(
        1, target[:, None], logits.gather(1, target[:, None])
    )
    (oracle,) = torch.autograd.grad(logits, xx, out_rel)
    assert _relative(ours.input, oracle) < 1e-10


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_fused_attention_gets_the_same_relevance(composite) -> None:
    """scaled_dot_product_attention's rule equals its three explicit steps' rules."""
    from prune.lrp.composites import get_composite

    composite = get_composite(composite, epsilon=EPS, stabilizer=EPS)  # stabilisers aside
    explicit = _vit()
    fused = _vit()
    for block in fused.blocks:
        block.attn.fused = True
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    a = attribute(explicit, x, torch.tensor([0, 1, 2]), composite)
    b = attribute(fused, x, torch.tensor([0, 1, 2]), composite)
    torch.testing.assert_close(b.logits, a.logits, rtol=1e-12, atol=1e-12)
    assert _relative(b.input, a.input) < 1e-10
