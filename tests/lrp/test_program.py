"""The traced program of a reused Explainer: the same relevance as installed wrappers, bit for bit
(absLRP: up to float rounding, as its program skips rescales that change nothing), and a
fall-back to them wherever a program would not run the model the same way."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from prune.lrp import COMPOSITES, Explainer, UnsupportedLayerError, attribute
from prune.lrp.types import LINEAR_TYPES


def _leaves(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and next(m.children(), None) is None]


def _assert_same(res, ref, record, rounding: float = 0.0) -> None:
    """Bit for bit, or up to ``rounding`` relative to each map's largest entry."""
    for got, want in [(res.input, ref.input)] + [(res.output[n], ref.output[n]) for n in record]:
        atol = rounding * want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=0, atol=atol)


def _no_leftovers(model: nn.Module) -> None:
    for name, m in model.named_modules():
        assert "forward" not in m.__dict__, f"forward wrapper left on {name!r}"


def _runs_as_program(model, x, target, preset, record, rounding: float = 0.0) -> Explainer:
    """A reused explainer traces ``model`` and gives the installed wrappers' relevance, twice."""
    explainer = Explainer(model, preset, record)
    for _ in range(2):
        res = explainer(x, target)
        assert explainer.engine._program is not None, f"{type(model).__name__} was not traced"
        _assert_same(res, attribute(model, x, target, preset, record), record, rounding)
        _no_leftovers(model)
    return explainer


@pytest.mark.parametrize("preset", sorted(COMPOSITES))
def test_program_equals_installed_wrappers(kind, preset, build, inputs) -> None:
    model, x = build(kind), inputs()
    record = _leaves(model)
    explainer = Explainer(model, preset, record)
    target = torch.tensor([0, 1, 2])
    for _ in range(2):
        res = explainer(x, target)
        assert explainer.engine._program is not None, "the model should have been traced"
        _assert_same(res, attribute(model, x, target, preset, record), record)
        _no_leftovers(model)


@pytest.mark.parametrize("build_tv", [torchvision.models.resnet18, torchvision.models.vgg11_bn])
def test_torchvision_models_run_as_programs(build_tv) -> None:
    torch.manual_seed(0)
    model = build_tv(num_classes=4).eval()
    x = torch.randn(2, 3, 32, 32)
    record = [n for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)]
    explainer = Explainer(model, "epsilon_plus_flat", record)
    target = torch.tensor([0, 3])
    res = explainer(x, target)
    assert explainer.engine._program is not None
    _assert_same(res, attribute(model, x, target, "epsilon_plus_flat", record), record)


@pytest.mark.parametrize("preset", ["attnlrp", "cp_lrp", "abslrp"])
def test_a_vit_runs_as_a_program(preset) -> None:
    """The class token and position embedding are the model's own parameters, read outside a
    layer: the program reads them at each step, and the relevance is the wrappers' bit for bit.
    (absLRP's program skips the rescales that change nothing: equal up to float64 rounding.)"""
    from prune.models.vit import ViT

    torch.manual_seed(0)
    dtype = torch.float64 if preset == "abslrp" else torch.float32
    model = ViT((1, 8, 8), 3, patch_size=4, dim=8, depth=2, heads=2).eval().to(dtype)
    with torch.no_grad():
        model.cls_token.normal_()
    x, target = torch.randn(3, 1, 8, 8, dtype=dtype), torch.tensor([0, 1, 2])
    record = ["blocks.0.attn.heads_out", "blocks.1.mlp.act"]
    rounding = 1e-12 if preset == "abslrp" else 0.0
    explainer = _runs_as_program(model, x, target, preset, record, rounding)
    with torch.no_grad():  # a changed parameter is read afresh
        model.cls_token.add_(1.0)
    ref = attribute(model, x, target, preset, record)
    _assert_same(explainer(x, target), ref, record, rounding)


@pytest.mark.parametrize("preset", ["attnlrp", "cp_lrp", "abslrp"])
@pytest.mark.parametrize("fused", [True, False])
def test_a_timm_vit_runs_as_a_program(preset, fused) -> None:
    """timm's forward takes an attention mask and a causal flag besides the batch, both with
    defaults: the program takes the defaults, as a call with the batch alone does."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=2, num_heads=2
    )
    for block in model.blocks:
        block.attn.fused_attn = fused
    model = model.eval().double()
    with torch.no_grad():
        model.cls_token.normal_()
    x, target = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2])
    rounding = 1e-12 if preset == "abslrp" else 0.0
    _runs_as_program(model, x, target, preset, [], rounding)


@pytest.mark.parametrize("preset", ["attnlrp", "cp_lrp", "abslrp"])
def test_a_torchvision_vit_runs_as_a_program(preset) -> None:
    """torchvision's ``nn.MultiheadAttention`` is traced through its canonizer's explicit
    attention, whose projection is a step like the model's layers; its position embedding is a
    parameter of a submodule, read outside a layer."""
    torch.manual_seed(0)
    # image 8, patch 4, 2 layers, 2 heads, width 8, MLP width 16
    model = torchvision.models.VisionTransformer(8, 4, 2, 2, 8, 16, num_classes=3)
    model = model.eval().double()
    with torch.no_grad():
        model.class_token.normal_()
    x, target = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2])
    record = ["encoder.layers.encoder_layer_0.self_attention.out_proj", "heads.head"]
    rounding = 1e-12 if preset == "abslrp" else 0.0
    explainer = _runs_as_program(model, x, target, preset, record, rounding)
    attention = model.encoder.layers[1].self_attention
    with torch.no_grad():  # new parameter objects (as a surgery makes) are bound afresh
        attention.in_proj_weight = nn.Parameter(attention.in_proj_weight * 2)
        model.encoder.pos_embedding.add_(1.0)
    ref = attribute(model, x, target, preset, record)
    _assert_same(explainer(x, target), ref, record, rounding)
    # the model's own check, its message formatted from this pass's values, not while tracing
    with pytest.raises(AssertionError, match="^Wrong image height! Expected 8 but got 4!$"):
        explainer(x[:, :, :4], target)


def test_hooks_are_run_by_falling_back_to_module_calls(build, inputs) -> None:
    model, x = build("lenet"), inputs()
    explainer = Explainer(model, "epsilon_plus")
    ref = explainer(x).input
    calls = []
    handle = model.features[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        torch.testing.assert_close(explainer(x).input, ref, rtol=0, atol=0)
    finally:
        handle.remove()
    assert calls == [1]  # a program would have skipped the hook
    torch.testing.assert_close(explainer(x).input, ref, rtol=0, atol=0)
    assert calls == [1]


class _Branchy(nn.Module):
    """Control flow on a tensor's size: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.relu = nn.Linear(256, 8), nn.Linear(8, 3), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc1(x.flatten(1)))
        if x.shape[0] > 1:
            h = self.relu(h)
        return self.fc2(h)


def test_untraceable_model_runs_with_installed_wrappers(inputs) -> None:
    model, x = _Branchy().double().eval(), inputs()
    explainer = Explainer(model, "epsilon", ["fc1"])
    for _ in range(2):
        res = explainer(x)
        _assert_same(res, attribute(model, x, None, "epsilon", ["fc1"]), ["fc1"])
    assert explainer.engine._program is None
    _no_leftovers(model)


def test_recorded_container_keeps_installed_wrappers(build, inputs) -> None:
    model, x = build("lenet"), inputs()
    explainer = Explainer(model, "epsilon_plus", ["features"])
    ref = attribute(model, x, None, "epsilon_plus", ["features"])
    _assert_same(explainer(x), ref, ["features"])
    assert explainer.engine._program is None


class _Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(256, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x.flatten(1)))  # a functional op without a rule


@pytest.mark.parametrize("nested", [False, True])
def test_unsupported_functional_op_names_its_module_as_installed(nested, inputs) -> None:
    model = (nn.Sequential(nn.Identity(), _Inner()) if nested else _Inner()).double().eval()
    where = "'1'" if nested else "'<root _Inner>'"
    message = rf"'tanh' called in the forward of {where}"
    for trace in (False, True):
        with pytest.raises(UnsupportedLayerError, match=message):
            Explainer(model, "epsilon", trace=trace)(inputs())
        _no_leftovers(model)


class _Scale(nn.Module):
    """A custom layer declared transparent (its gradient taken as the rule)."""

    lrp_transparent = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


@pytest.mark.parametrize("preset", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_native_layers_on_the_input_match_installed_wrappers(preset, inputs) -> None:
    """A max-pool and a custom native layer reading the model input: the program does what the
    functional mode does for them (the input's aliases, its use by ops other than rules)."""
    torch.manual_seed(0)
    for model in (
        nn.Sequential(
            nn.MaxPool2d(2), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)
        ),
        nn.Sequential(_Scale(), nn.Linear(256, 6), nn.ReLU(), nn.Linear(6, 3)),
    ):
        model = model.double().eval()
        explainer, x = Explainer(model, preset), inputs()
        for _ in range(2):
            res = explainer(x)
            assert explainer.engine._program is not None
            _assert_same(res, attribute(model, x, None, preset), [])
        _no_leftovers(model)


@pytest.mark.parametrize("trace", [True, False])
def test_the_explicit_attention_refuses_an_unbatched_input_traced_or_not(trace) -> None:
    class Unbatched(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):  # (N, E): one sequence, no batch axis
            out, _ = self.attn(x, x, x, need_weights=False)
            return self.head(out)

    explainer = Explainer(Unbatched().eval(), "attnlrp", trace=trace)
    with pytest.raises(UnsupportedLayerError, match=r"'attn'.*an input of shape \(5, 8\)"):
        explainer(torch.randn(5, 8), torch.zeros(5, dtype=torch.long))
