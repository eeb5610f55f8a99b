"""Explanations of Vision Transformers: the attention methods against hand computations, every
method's map shape on a tiny ViT, the removal/flipping/GAE evaluation, the refusal of other
models."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prune.errors import ConfigError
from prune.evaluation.explanations import evaluate_explanations
from prune.evaluation.methods import AttentionRollout, ClassTokenAttention, get_method
from prune.models import ViT

PATCH = 4  # 8x8 images, a 2x2 grid of 4x4 patches

#: every method the ViT evaluation compares, with cheap settings
VIT_METHODS = {
    "gradient_x_input": {},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 4},
    "abslrp": {},
    "lrp_attnlrp": {},
    "lrp_cp_lrp": {},
    "attention_rollout": {},
    "cls_attention": {},
    "random": {},
}


def tiny_vit(fused: bool = False, channels: int = 1) -> ViT:
    torch.manual_seed(0)
    net = ViT((channels, 8, 8), 3, patch_size=PATCH, dim=8, depth=2, heads=2, fused_attention=fused)
    with torch.no_grad():  # the class token starts at zero: make the prefix token matter
        net.cls_token.normal_()
        net.pos_embed.normal_()
    return net.double().eval()


def images(n: int = 4, channels: int = 1) -> Tensor:
    return torch.randn(n, channels, 8, 8, generator=torch.Generator().manual_seed(1)).double()


def attention_by_hand(net: ViT, x: Tensor) -> list[Tensor]:
    """Each block's attention ``(B, H, N, N)``, q, k and the softmax written out per head."""
    tokens = net.patch_embed(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([net.cls_token.expand(x.shape[0], -1, -1), tokens], 1) + net.pos_embed
    maps = []
    for block in net.blocks:
        attn, h = block.attn, block.norm1(tokens)
        width = attn.heads * attn.head_dim
        qkv = h @ attn.qkv.weight.T + attn.qkv.bias
        heads = []
        for i in range(attn.heads):
            cols = slice(i * attn.head_dim, (i + 1) * attn.head_dim)
            q, k = qkv[..., :width][..., cols], qkv[..., width : 2 * width][..., cols]
            scores = q @ k.transpose(1, 2) / attn.head_dim**0.5
            heads.append(scores.exp() / scores.exp().sum(-1, keepdim=True))
        maps.append(torch.stack(heads, 1))
        tokens = tokens + attn(h)
        tokens = tokens + block.mlp(block.norm2(tokens))
    return maps


def pixels(values: Tensor) -> Tensor:
    """``(B, 4)`` patch values -> ``(B, 8, 8)``, each 4x4 patch filled, row-major grid."""
    out = torch.empty(values.shape[0], 8, 8, dtype=values.dtype)
    for p in range(4):
        r, c = divmod(p, 2)
        out[:, PATCH * r : PATCH * (r + 1), PATCH * c : PATCH * (c + 1)] = values[:, p, None, None]
    return out


def test_attention_rollout_equals_the_rollout_by_hand():
    net, x = tiny_vit(), images()
    rollout = torch.eye(5, dtype=x.dtype).expand(4, 5, 5)
    for a in attention_by_hand(net, x):  # Abnar & Zuidema: 0.5 A + 0.5 I, later blocks left
        rollout = (0.5 * a.mean(1) + 0.5 * torch.eye(5, dtype=x.dtype)) @ rollout
    expected = pixels(rollout[:, 0, 1:])
    target = torch.zeros(4, dtype=torch.long)
    got = AttentionRollout()(net, x, target)
    torch.testing.assert_close(got[:, 0], expected, rtol=1e-12, atol=1e-12)
    # the map ignores the target, and the fused attention forward reads the same
    torch.testing.assert_close(AttentionRollout()(net, x, target + 2), got)
    fused = tiny_vit(fused=True)
    fused.load_state_dict(net.state_dict())
    torch.testing.assert_close(AttentionRollout()(fused, x, target), got)


def test_cls_attention_equals_the_softmax_row_by_hand():
    net, x = tiny_vit(), images()
    last = attention_by_hand(net, x)[-1]
    got = ClassTokenAttention()(net, x, torch.ones(4, dtype=torch.long))
    torch.testing.assert_close(got[:, 0], pixels(last.mean(1)[:, 0, 1:]), rtol=1e-12, atol=1e-12)
    assert not any(m._forward_hooks for m in net.modules())  # the hooks are gone


def test_rgb_patch_value_is_split_over_channels():
    net, x = tiny_vit(channels=3), images(2, channels=3)
    got = ClassTokenAttention()(net, x, torch.zeros(2, dtype=torch.long))
    last = attention_by_hand(net, x)[-1]
    torch.testing.assert_close(got.sum(1), pixels(last.mean(1)[:, 0, 1:]))
    torch.testing.assert_close(got[:, 0], got[:, 2])


def test_timm_vit_with_a_register_token():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = (
        timm.models.vision_transformer.VisionTransformer(
            img_size=8,
            patch_size=PATCH,
            in_chans=1,
            num_classes=3,
            embed_dim=8,
            depth=2,
            num_heads=2,
            reg_tokens=1,
        )
        .double()
        .eval()
    )
    recorded = []  # timm's explicit path feeds the softmax attention to attn_drop
    for block in net.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, i, o: recorded.append(i[0]))
    x = images()
    with torch.no_grad():
        net(x)
    expected = pixels(recorded[-1].mean(1)[:, 0, 2:])
    got = ClassTokenAttention()(net, x, torch.zeros(4, dtype=torch.long))
    # prefix: the class token, then the register token; the patches follow
    torch.testing.assert_close(got[:, 0], expected)


@pytest.mark.parametrize("name", list(VIT_METHODS))
def test_every_vit_method_returns_a_map_shaped_like_the_input(name):
    net, x = tiny_vit(), images()
    target = torch.tensor([0, 1, 2, 0])
    r = get_method(name, **VIT_METHODS[name])(net, x, target)
    assert r.shape == x.shape and r.dtype == x.dtype and torch.isfinite(r).all()
    assert r.abs().sum() > 0


def test_removal_flipping_and_gae_run_on_a_tiny_vit():
    net, x = tiny_vit(), images(8)
    y = torch.arange(8) % 3
    names = ["lrp_attnlrp", "attention_rollout", "cls_attention"]
    methods = {n: get_method(n) for n in names}
    res = evaluate_explanations(net, x, y, methods, gae_steps=2, flip_steps=4, figures=False)
    assert list(res["table"]) == [*names, "random"]
    for row in res["table"].values():
        assert 0 <= row["removal/acc_kept"] <= 1 and 0 <= row["removal/conf_removed"] <= 1
        assert 0 <= row["gae/gae"] <= 1 and 0 <= row["gae/contrastiveness"] <= 1
        assert all(v == v for v in row.values())  # no NaN
    assert res["curves"]["attention_rollout"]["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("name", ["attention_rollout", "cls_attention"])
def test_a_model_without_vit_is_refused_in_one_line(name):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double()
    with pytest.raises(
        ConfigError, match=rf"'{name}' needs a Vision Transformer.*got Sequential"
    ) as err:
        get_method(name)(net, images(), torch.zeros(4, dtype=torch.long))
    assert "\n" not in str(err.value)


def test_torchvision_vit_with_its_attention_written_out():
    from torchvision.models.vision_transformer import VisionTransformer

    from prune.models.explicit_attention import explicit_attention

    torch.manual_seed(0)
    net = VisionTransformer(8, PATCH, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16)
    net = net.double().eval()
    x = images(channels=3)
    inputs = []  # what the last block's nn.MultiheadAttention attends over
    last = net.encoder.layers[-1]
    last.ln_1.register_forward_hook(lambda m, i, o: inputs.append(o))
    with torch.no_grad():
        net(x)
        _, weights = last.self_attention(*[inputs[-1]] * 3, average_attn_weights=True)
    target = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match="model.explicit_attention=true"):
        ClassTokenAttention()(net, x, target)
    explicit_attention(net)
    got = ClassTokenAttention()(net, x, target)
    expected = pixels(weights[:, 0, 1:])  # the class token's row, averaged over heads
    torch.testing.assert_close(got.sum(1), expected, rtol=1e-12, atol=1e-12)  # RGB: split
