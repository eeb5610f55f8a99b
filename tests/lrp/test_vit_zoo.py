"""torchvision's and timm's Vision Transformers under the transformer composites (float64).

Each zoo model gets random weights and is copied into :class:`prune.models.ViT` with the same
sizes (LayerNorm eps 1e-6, as both zoos use): the logits and the relevance of every transformer
composite must agree. torchvision's ``nn.MultiheadAttention`` and timm's ``LayerScale`` are
explained through the canonizers of :mod:`prune.lrp.attention_canonizer` and
:mod:`prune.lrp.layer_scale_canonizer`, which the transformer composites list.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from prune.lrp import UnsupportedLayerError, attribute, get_composite
from prune.lrp.attention_canonizer import ExplicitMultiheadAttention
from prune.lrp.composites import Composite
from prune.lrp.engine import Engine
from prune.lrp.layer_scale_canonizer import ExplicitLayerScale
from prune.models.vit import ViT

COMPOSITES = ["attnlrp", "cp_lrp", "abslrp"]
CLASSES, SIDE, PATCH, DIM, DEPTH, HEADS, MLP_RATIO = 3, 8, 4, 8, 2, 2, 2.0
TARGET = torch.tensor([0, 2, 1])

#: torchvision's parameter names -> prune.models.ViT's (regular expression, replacement).
TORCHVISION_NAMES = [
    (r"^class_token$", "cls_token"),
    (r"^conv_proj\.", "patch_embed."),
    (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.", r"blocks.\1."),
    (r"\.ln_1\.", ".norm1."),
    (r"\.ln_2\.", ".norm2."),
    (r"\.self_attention\.in_proj_", ".attn.qkv."),
    (r"\.self_attention\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.0\.", ".mlp.fc1."),
    (r"\.mlp\.3\.", ".mlp.fc2."),
    (r"^encoder\.ln\.", "norm."),
    (r"^heads\.head\.", "head."),
]
#: timm's parameter names -> prune.models.ViT's (the blocks already agree).
TIMM_NAMES = [(r"^patch_embed\.proj\.", "patch_embed."), (r"^fc_norm\.", "norm.")]


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random float64 weights, LayerNorm scales around 1, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            values = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if name.endswith("gamma"):  # LayerScale: positive, so it folds into the layer before
                values = torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5
            elif "norm" in name or "ln" in name:
                values = 1 + 0.2 * values if name.endswith("weight") else 0.1 * values
            else:
                values = 0.5 * values
            p.copy_(values)
    return model


def _torchvision(seed: int = 0) -> nn.Module:
    model = TorchvisionViT(
        image_size=SIDE,
        patch_size=PATCH,
        num_layers=DEPTH,
        num_heads=HEADS,
        hidden_dim=DIM,
        mlp_dim=int(DIM * MLP_RATIO),
        num_classes=CLASSES,
        dropout=0.1,  # eval mode: no dropout, and the attention's is checked to be off
        attention_dropout=0.1,
    )
    return _randomize(model, seed)


def _timm(
    seed: int = 0, fused: bool = True, pool: str = "token", layer_scale: bool = False
) -> nn.Module:
    model = TimmViT(
        img_size=SIDE,
        patch_size=PATCH,
        in_chans=1,
        num_classes=CLASSES,
        global_pool=pool,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=HEADS,
        mlp_ratio=MLP_RATIO,
        init_values=1.0 if layer_scale else None,
        drop_rate=0.1,  # every dropout of timm's ViT, in eval mode
        pos_drop_rate=0.1,
        proj_drop_rate=0.1,
        attn_drop_rate=0.1,
    )
    for block in model.blocks:
        block.attn.fused_attn = fused
    return _randomize(model, seed)


class _AvgPoolViT(ViT):
    """prune.models.ViT with timm's ``global_pool='avg'`` head: the mean of the patch tokens,
    then the final LayerNorm (timm's ``fc_norm``) and the linear head."""

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x)[:, 1:].mean(1)))


def _ours(channels: int, fused: bool, pool: str = "token") -> ViT:
    """prune.models.ViT with the zoo models' sizes and their LayerNorm eps."""
    cls = _AvgPoolViT if pool == "avg" else ViT
    model = cls(
        (channels, SIDE, SIDE),
        CLASSES,
        patch_size=PATCH,
        dim=DIM,
        depth=DEPTH,
        heads=HEADS,
        mlp_ratio=MLP_RATIO,
        fused_attention=fused,
    )
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = 1e-6
    return model.double().eval()


def _renamed(state: dict[str, Tensor], names: list[tuple[str, str]]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, replacement in names:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def _fold_layer_scale(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm's LayerScale ``gamma * layer(x)`` folded into the layer before it (rows and bias)."""
    state = dict(state)
    for key in [k for k in state if k.endswith(".gamma")]:
        gamma = state.pop(key)
        block, scale = key.rsplit(".", 2)[0], key.split(".")[-2]
        layer = {"ls1": "attn.proj", "ls2": "mlp.fc2"}[scale]
        state[f"{block}.{layer}.weight"] = state[f"{block}.{layer}.weight"] * gamma[:, None]
        state[f"{block}.{layer}.bias"] = state[f"{block}.{layer}.bias"] * gamma
    return state


def _copy_of_torchvision(model: nn.Module) -> ViT:
    ours = _ours(3, fused=False)  # the canonizer writes the attention out, as fused=False does
    ours.load_state_dict(_renamed(model.state_dict(), TORCHVISION_NAMES))
    return ours


def _copy_of_timm(model: nn.Module, fused: bool, pool: str) -> ViT:
    ours = _ours(1, fused, pool)
    ours.load_state_dict(_fold_layer_scale(_renamed(model.state_dict(), TIMM_NAMES)))
    return ours


def _x(channels: int, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(3, channels, SIDE, SIDE, generator=gen, dtype=torch.float64)


def _composite(name: str, exact: bool = False) -> Composite:
    """The preset; ``exact``: with zero stabilisers, where the two models compute the same
    function in another order, so that a stabiliser meets differently scaled values (timm's
    explicit attention scales ``q`` before ``q @ k^T``, LayerScale scales a layer's output)."""
    if exact and name != "abslrp":  # absLRP has no stabiliser that such orders touch
        return get_composite(name, epsilon=0.0, stabilizer=0.0)
    return get_composite(name)


def _assert_same_explanation(zoo: nn.Module, ours: ViT, x: Tensor, composite: Composite) -> None:
    theirs, mine = attribute(zoo, x, TARGET, composite), attribute(ours, x, TARGET, composite)
    torch.testing.assert_close(theirs.logits, mine.logits, rtol=1e-12, atol=1e-12)
    scale = mine.input.abs().max()
    assert scale > 0
    assert ((theirs.input - mine.input).abs().max() / scale).item() < 1e-10


# -- the canonizer -----------------------------------------------------------------------------
@pytest.mark.parametrize("composite", COMPOSITES)
def test_transformer_composites_canonize_multihead_attention(composite: str) -> None:
    canonizers = get_composite(composite).canonizers
    for kind in (ExplicitMultiheadAttention, ExplicitLayerScale):
        assert any(isinstance(c, kind) for c in canonizers), kind.__name__


@pytest.mark.parametrize("bias", [True, False])
def test_explicit_attention_computes_multihead_attention(bias: bool) -> None:
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(DIM, HEADS, bias=bias, batch_first=True).double().eval()
    standin = ExplicitMultiheadAttention().replacements([("attn", attention, False)])[attention]
    x = torch.randn(3, 5, DIM, dtype=torch.float64)
    out, weights = standin(x, x, x, need_weights=False)
    expected, _ = attention(x, x, x, need_weights=False)
    assert weights is None
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert standin.in_proj.weight is attention.in_proj_weight  # the module's own parameters


# -- the zoo against prune.models.ViT ----------------------------------------------------------
@pytest.mark.parametrize("composite", COMPOSITES)
def test_torchvision_vit_is_explained_as_the_project_vit(composite: str) -> None:
    model = _torchvision()
    _assert_same_explanation(model, _copy_of_torchvision(model), _x(3), _composite(composite))


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("pool", ["token", "avg"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
def test_timm_vit_is_explained_as_the_project_vit(composite: str, pool: str, fused: bool) -> None:
    model = _timm(fused=fused, pool=pool)
    ours = _copy_of_timm(model, fused, pool)
    _assert_same_explanation(model, ours, _x(1), _composite(composite, exact=not fused))


@pytest.mark.parametrize("composite", COMPOSITES)
def test_timm_layer_scale_is_explained_as_the_layer_it_scales(composite: str) -> None:
    model = _timm(seed=1, layer_scale=True)
    ours = _copy_of_timm(model, fused=True, pool="token")
    _assert_same_explanation(model, ours, _x(1, seed=1), _composite(composite, exact=True))


ZOO: dict[str, Callable[[], tuple[nn.Module, Tensor]]] = {
    "torchvision": lambda: (_torchvision(), _x(3)),
    "timm": lambda: (_timm(layer_scale=True), _x(1)),
}


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("zoo", sorted(ZOO))
def test_explaining_leaves_the_zoo_model_unchanged(zoo: str, composite: str) -> None:
    model, x = ZOO[zoo]()
    params = dict(model.named_parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        out = model(x)
    attribute(model, x, TARGET, composite)
    with torch.no_grad():
        assert torch.equal(model(x), out)
    assert dict(model.named_parameters()).keys() == params.keys()
    assert all(p is params[n] for n, p in model.named_parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for name, m in model.named_modules():
        hooks = (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks)
        assert not any(hooks), f"hook left on {name!r}"
        assert "forward" not in m.__dict__, f"forward wrapper left on {name!r}"


# -- what the canonizer does not cover ---------------------------------------------------------
class _Attending(nn.Module):
    """Tokens ``(B, N, E)`` -> an ``nn.MultiheadAttention`` called by ``call`` -> mean -> head."""

    def __init__(self, call: Callable[[nn.Module, Tensor], Tensor], **kwargs: object) -> None:
        super().__init__()
        self.call = call
        self.attn = nn.MultiheadAttention(DIM, HEADS, **{"batch_first": True, **kwargs})
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.call(self.attn, x).mean(1))


def _self(attention: nn.Module, x: Tensor) -> Tensor:
    return attention(x, x, x, need_weights=False)[0]


def _tokens() -> Tensor:
    return torch.randn(2, 4, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def _mask(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[1], x.shape[1], dtype=torch.bool)


CALLS: dict[str, tuple[Callable[[nn.Module, Tensor], Tensor], str]] = {
    "cross": (lambda a, x: a(x, x.clone(), x, need_weights=False)[0], "cross-attention"),
    "attn_mask": (lambda a, x: a(x, x, x, need_weights=False, attn_mask=_mask(x))[0], "a mask"),
    "padding": (
        lambda a, x: a(
            x, x, x, need_weights=False, key_padding_mask=torch.zeros(x.shape[:2], dtype=bool)
        )[0],
        "a mask",
    ),
    "causal": (lambda a, x: a(x, x, x, need_weights=False, is_causal=True)[0], "a mask"),
    "weights": (lambda a, x: a(x, x, x)[0], "need_weights=True"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_uncovered_calls_stop_with_one_line(call: str) -> None:
    forward, what = CALLS[call]
    model = _Attending(forward).double().eval()
    pattern = f"'attn' \\(MultiheadAttention\\).*{what}"
    with pytest.raises(UnsupportedLayerError, match=pattern) as error:
        attribute(model, _tokens(), None, "attnlrp")
    assert "\n" not in str(error.value)


SETTINGS: dict[str, tuple[dict[str, object], str]] = {
    "batch_first": ({"batch_first": False}, "batch_first=False"),
    "kdim": ({"kdim": 4, "vdim": 4}, "kdim=4, vdim=4"),
    "bias_kv": ({"add_bias_kv": True}, "add_bias_kv=True"),
    "zero_attn": ({"add_zero_attn": True}, "add_zero_attn=True"),
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("composite", COMPOSITES)
def test_uncovered_settings_stop_before_the_pass(setting: str, composite: str) -> None:
    kwargs, what = SETTINGS[setting]
    model = _Attending(_self, **kwargs).double().eval()
    with pytest.raises(UnsupportedLayerError, match=re.escape(what)) as error:
        Engine(model, get_composite(composite))
    assert "\n" not in str(error.value)


def test_dropout_in_training_mode_stops_and_eval_mode_runs() -> None:
    model, x = _Attending(_self, dropout=0.1).double(), _tokens()
    engine = Engine(model.train(), get_composite("attnlrp"))
    with pytest.raises(UnsupportedLayerError, match=r"dropout=0\.1 in training mode"), engine:
        engine.forward(x)
    result = attribute(model, x, torch.tensor([0, 1]), "attnlrp")  # explained in eval mode
    assert model.training and result.input.shape == x.shape
