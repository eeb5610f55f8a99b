"""absLRP on a Vision Transformer against a float64 reference written from the paper's formulas.

The reference below runs the ViT forward with explicit tensors and then walks it backward layer
by layer with the absolute-magnitude rule of Vukadin et al. (2024): every layer's output ``y``
and its twin on ``|x|`` with ``|W|`` give the input relevance
``x * (dy/dx + d y_twin/dx)^T (R / |y|)``, rescaled to unit L1 per sample; LayerNorm keeps its
mean and variance, the softmax its maximum and denominator, as constants; both factors of each
attention product get relevance, each rescaled on its own; a residual sum rescales each branch
on its own; the attention scale and the class-token selection pass relevance unchanged.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.lrp import attribute
from prune.lrp.composites import AbsLRP
from prune.models.vit import ViT


def _vit(seed: int = 0, fused: bool = False) -> ViT:
    torch.manual_seed(seed)
    model = ViT((1, 8, 8), 3, patch_size=4, dim=8, depth=2, heads=2, fused_attention=fused)
    model = model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(-1.5, 1.5)  # both signs: the twin takes |w|
                m.bias.normal_(0, 0.1)
        model.cls_token.normal_(0, 0.5)
    return model


def _unit(t: Tensor) -> Tensor:
    norm = t.flatten(1).abs().sum(1)
    return t / norm.clamp_min(1e-300).reshape(-1, *([1] * (t.dim() - 1)))


def _over(relevance: Tensor, y: Tensor) -> Tensor:
    """``R / |y|``, 0 where ``y == 0``."""
    return torch.where(y == 0, torch.zeros_like(y), relevance / y.abs().clamp_min(1e-300))


def _linear(x: Tensor, w: Tensor, b: Tensor, relevance: Tensor) -> Tensor:
    c = _over(relevance, x @ w.T + b)
    return _unit(x * (c @ w + x.sign() * (c @ w.abs())))


def _layer_norm(x: Tensor, ln: nn.LayerNorm, relevance: Tensor) -> Tensor:
    def inv_std(t: Tensor) -> Tensor:
        return 1 / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + ln.eps)

    w = ln.weight
    y = (x - x.mean(-1, keepdim=True)) * inv_std(x) * w + ln.bias
    return _unit(x * (w * inv_std(x) + x.sign() * w.abs() * inv_std(x.abs())) * _over(relevance, y))


def _gelu_slope(x: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    return cdf + x * torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _gelu(x: Tensor, relevance: Tensor) -> Tensor:
    y = x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    return _unit(x * (_gelu_slope(x) + x.sign() * _gelu_slope(x.abs())) * _over(relevance, y))


def _residual(a: Tensor, b: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    c = _over(relevance, a + b)
    return _unit(a * (1 + a.sign()) * c), _unit(b * (1 + b.sign()) * c)


def _product(a: Tensor, b: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    """``y = a @ b``: ``R_a ~ a (c b^T + sign(a) c |b|^T)``,
    ``R_b ~ b (a^T c + sign(b) |a|^T c)``."""
    c = _over(relevance, a @ b)
    bt, at = b.transpose(-2, -1), a.transpose(-2, -1)
    r_a = a * (c @ bt + a.sign() * (c @ bt.abs()))
    r_b = b * (at @ c + b.sign() * (at.abs() @ c))
    return _unit(r_a), _unit(r_b)


def _softmax(s: Tensor, relevance: Tensor) -> Tensor:
    a, twin = s.softmax(-1), s.abs().softmax(-1)
    return _unit(s * (a + s.sign() * twin) * _over(relevance, a))


def _reference(model: ViT, x: Tensor, seed: Tensor) -> Tensor:
    """absLRP of ``model`` at ``x`` for the output relevance ``seed`` (not contrastive)."""
    conv = model.patch_embed
    p = conv.kernel_size[0]
    patches = F.unfold(x, p, stride=p).transpose(1, 2)  # (B, N, C p p): the conv as a linear map
    wp, bp = conv.weight.flatten(1), conv.bias
    tokens = patches @ wp.T + bp
    b_, n, d = tokens.shape
    cat = torch.cat([model.cls_token.expand(b_, -1, -1), tokens], 1)
    h = cat + model.pos_embed
    saved = []
    for block in model.blocks:
        att = block.attn
        a = h
        n1 = block.norm1(a)
        qkv = n1 @ att.qkv.weight.T + att.qkv.bias
        q, k, v = qkv.reshape(b_, n + 1, 3, att.heads, att.head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * att.scale
        attn = scores.softmax(-1)
        heads = attn @ v
        merged = heads.transpose(1, 2).reshape(b_, n + 1, d)
        proj = merged @ att.proj.weight.T + att.proj.bias
        h1 = a + proj
        n2 = block.norm2(h1)
        f1 = n2 @ block.mlp.fc1.weight.T + block.mlp.fc1.bias
        g = F.gelu(f1)
        f2 = g @ block.mlp.fc2.weight.T + block.mlp.fc2.bias
        saved.append((a, n1, q, k, v, scores, attn, merged, proj, h1, n2, f1, g, f2))
        h = h1 + f2
    final = h
    pooled = model.norm(final)[:, 0]

    r = _linear(pooled, model.head.weight, model.head.bias, seed)
    r_tokens = torch.zeros_like(final)
    r_tokens[:, 0] = r  # the selection passes relevance unchanged
    r = _layer_norm(final, model.norm, r_tokens)
    for block, (a, n1, q, k, v, scores, attn, merged, proj, h1, n2, f1, g, f2) in zip(
        reversed(model.blocks), reversed(saved), strict=True
    ):
        att, mlp = block.attn, block.mlp
        r_h1, r_f2 = _residual(h1, f2, r)
        r_g = _linear(g, mlp.fc2.weight, mlp.fc2.bias, r_f2)
        r_f1 = _gelu(f1, r_g)
        r_n2 = _linear(n2, mlp.fc1.weight, mlp.fc1.bias, r_f1)
        r = r_h1 + _layer_norm(h1, block.norm2, r_n2)
        r_a, r_proj = _residual(a, proj, r)
        r_merged = _linear(merged, att.proj.weight, att.proj.bias, r_proj)
        r_heads = r_merged.reshape(b_, n + 1, att.heads, att.head_dim).transpose(1, 2)
        r_attn, r_v = _product(attn, v, r_heads)
        r_scores = _softmax(scores, r_attn)  # the scale passes relevance unchanged
        r_q, r_kt = _product(q, k.transpose(-2, -1), r_scores)
        r_qkv = torch.stack([r_q, r_kt.transpose(-2, -1), r_v]).permute(1, 3, 0, 2, 4)
        r_n1 = _linear(n1, att.qkv.weight, att.qkv.bias, r_qkv.reshape(b_, n + 1, 3 * d))
        r = r_a + _layer_norm(a, block.norm1, r_n1)
    c = _over(r, cat + model.pos_embed)
    r_cat = _unit(cat * (1 + cat.sign()) * c)
    r_patches = _linear(patches, wp, bp, r_cat[:, 1:])
    return F.fold(r_patches.transpose(1, 2), x.shape[-2:], p, stride=p)


def _seeds(target: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    one = F.one_hot(target, classes).double()
    return one, (1 - one) / (classes - 1)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("seed", [0, 1])
def test_abslrp_vit_matches_the_formulas(fused, backend, seed) -> None:
    model = _vit(seed, fused)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([0, 1, 2, 1])
    got = attribute(model, x, target, "abslrp", backend=backend).input
    one, rest = _seeds(target, 3)
    want = _reference(model, x, one) - _reference(model, x, rest)
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-10


def test_abslrp_vit_layers_have_unit_l1() -> None:
    model, x = _vit(), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    names = ["patch_embed", "blocks.0.norm1", "blocks.1.mlp.fc1", "blocks.1.mlp.act", "head"]
    res = attribute(model, x, None, AbsLRP(contrastive=False), record=names)
    for name in names[1:-1]:  # the relevance at each layer's output: its consumer rescaled it
        norms = res.output[name].flatten(1).abs().sum(1)
        torch.testing.assert_close(norms, torch.ones_like(norms), msg=name)
    norms = res.input.flatten(1).abs().sum(1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_abslrp_vit_leaves_the_model_unchanged() -> None:
    model, x = _vit(), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(x)
    attribute(model, x, None, "abslrp")
    assert torch.equal(model(x), out)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class _MaskedScores(nn.Module):
    """Scores with some entries masked to -inf, their softmax, and a head on it."""

    def __init__(self) -> None:
        super().__init__()
        self.scores, self.head = nn.Linear(6, 6), nn.Linear(6, 3)
        mask = torch.zeros(6)
        mask[[1, 4]] = float("-inf")
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return self.head((self.scores(x) + self.mask).softmax(-1))


def test_abslrp_softmax_with_masked_scores_matches_the_reference() -> None:
    torch.manual_seed(0)
    model, x = _MaskedScores().double().eval(), torch.randn(5, 6, dtype=torch.float64)
    record = ["scores"]
    fast = attribute(model, x, None, "abslrp", record=record)
    ref = attribute(model, x, None, "abslrp", record=record, backend="reference")
    assert torch.isfinite(fast.input).all()
    torch.testing.assert_close(fast.input, ref.input, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.output["scores"], ref.output["scores"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_abslrp_gelu_matches_the_reference_at_zero_and_where_it_underflows(approximate) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.GELU(approximate=approximate), nn.Linear(6, 3))
    model = model.double().eval()
    with torch.no_grad():  # pre-activations 0 (GELU and its slope 0) and -60 (GELU underflows)
        model[0].weight.copy_(torch.eye(6))
        model[0].bias.copy_(torch.tensor([0.0, -60.0, 0.0, 0.0, 0.0, 0.0]))
    x = torch.randn(5, 6, dtype=torch.float64)
    x[:, 2] = 0.0
    assert (F.gelu(model[0](x), approximate=approximate)[:, 1] == 0).all()
    fast = attribute(model, x, None, "abslrp", record=["0"])
    ref = attribute(model, x, None, "abslrp", record=["0"], backend="reference")
    torch.testing.assert_close(fast.output["0"], ref.output["0"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.input, ref.input, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("affine", [True, False])
def test_abslrp_layer_norm_matches_the_reference_with_and_without_affine_map(affine) -> None:
    torch.manual_seed(0)
    norm = nn.LayerNorm(6, elementwise_affine=affine)
    model = nn.Sequential(nn.Linear(5, 6), norm, nn.Linear(6, 3)).double().eval()
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(-1.5, 1.5)  # both signs: the twin takes |w|
            norm.bias.normal_(0, 0.1)
    x = torch.randn(7, 5, dtype=torch.float64)
    fast = attribute(model, x, None, "abslrp", record=["0"])
    ref = attribute(model, x, None, "abslrp", record=["0"], backend="reference")
    torch.testing.assert_close(fast.output["0"], ref.output["0"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.input, ref.input, rtol=1e-10, atol=1e-12)


class _Product(nn.Module):
    """Two activations multiplied, one broadcast over the other's features (a gate)."""

    def __init__(self, gate: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 6), nn.Linear(5, 1 if gate else 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.a(x) * self.b(x))


@pytest.mark.parametrize("gate", [False, True])
def test_abslrp_product_of_two_activations_matches_the_reference(gate) -> None:
    torch.manual_seed(0)
    model, x = _Product(gate).double().eval(), torch.randn(7, 5, dtype=torch.float64)
    fast = attribute(model, x, None, "abslrp", record=["a", "b"])
    ref = attribute(model, x, None, "abslrp", record=["a", "b"], backend="reference")
    for name in ("a", "b"):
        torch.testing.assert_close(fast.output[name], ref.output[name], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.input, ref.input, rtol=1e-10, atol=1e-12)
