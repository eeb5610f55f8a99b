"""Oracle: our relevance equals Zennit's on the same model, input and composite (float64)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
import zennit.composites as zc
from torch import Tensor, nn
from zennit import rules as zr
from zennit.attribution import Gradient
from zennit.canonizers import AttributeCanonizer, CompositeCanonizer, SequentialMergeBatchNorm
from zennit.layer import Sum
from zennit.torchvision import ResNetCanonizer
from zennit.types import Linear as ZLinear

from prune.lrp import attribute
from prune.models.resnet_small import BasicBlock

# Zennit's equivalent of each of our presets that Zennit has (ours: prune.lrp.COMPOSITES).
ZENNIT: dict[str, Callable[[list], zc.Composite]] = {
    "epsilon": lambda c: zc.LayerMapComposite(
        [*zc.layer_map_base(), (ZLinear, zr.Epsilon())], canonizers=c
    ),
    "epsilon_plus": lambda c: zc.EpsilonPlus(canonizers=c),
    "epsilon_plus_flat": lambda c: zc.EpsilonPlusFlat(canonizers=c),
    "epsilon_gamma_box": lambda c: zc.EpsilonGammaBox(low=-0.4242, high=2.8215, canonizers=c),
    "epsilon_alpha2_beta1": lambda c: zc.EpsilonAlpha2Beta1(canonizers=c),
    "epsilon_alpha2_beta1_flat": lambda c: zc.EpsilonAlpha2Beta1Flat(canonizers=c),
}
# BatchNorm eps for the comparison: Zennit's merge leaves x / sqrt(1 + eps) behind, ours is
# exact; this eps makes that factor 1 in float64 (torch 2.11 refuses eps = 0 in batch_norm).
BN_EPS = 1e-30
# float64 agreement; gamma reaches 1e-8 because we form its denominators by linearity
# (z + gamma p) where Zennit runs two more modified forwards: rounding differs near zero.
RTOL = 1e-6


def _block_forward(self: BasicBlock, x: Tensor) -> Tensor:
    """ResNetSmall's block with the residual sum as a Zennit ``Sum`` (as its ResNet canonizer)."""
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu2(self.canonizer_sum(torch.stack([self.shortcut(x), out], dim=-1)))


def _resnet_small_canonizer() -> CompositeCanonizer:
    def attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, BasicBlock):
            return {"forward": _block_forward.__get__(module), "canonizer_sum": Sum()}
        return None

    return CompositeCanonizer([SequentialMergeBatchNorm(), AttributeCanonizer(attributes)])


def _zennit(
    model: nn.Module, x: Tensor, out_rel: Tensor, composite: zc.Composite, names: list[str]
):
    """Zennit's input relevance and the relevance arriving at each named module's output."""
    layer_rel: dict[str, Tensor] = {}
    modules = dict(model.named_modules())
    xx = x.clone().requires_grad_()
    with Gradient(model, composite) as attributor:
        handles = []
        for name in names:

            def hook(module, inp, out, name=name):
                out.register_hook(lambda g: layer_rel.__setitem__(name, g))

            handles.append(modules[name].register_forward_hook(hook))
        try:
            _, rel = attributor(xx, out_rel)
        finally:
            for h in handles:
                h.remove()
    return rel, layer_rel


def _assert_close(ours: Tensor, theirs: Tensor, what: str) -> None:
    scale = theirs.abs().max().clamp_min(1e-300)
    err = ((ours - theirs).abs().max() / scale).item()
    assert err <= RTOL, f"{what}: relative error {err:.2e} > {RTOL}"


def _recordable(model: nn.Module) -> list[str]:
    linear = (nn.Linear, nn.Conv2d)
    return [n for n, m in model.named_modules() if isinstance(m, linear)]


@pytest.mark.parametrize("preset", sorted(ZENNIT))
def test_presets_match_zennit_on_input_and_layers(kind: str, preset: str, build, inputs) -> None:
    model, x = build(kind, bn_eps=BN_EPS), inputs()
    target = torch.tensor([0, 1, 2])
    names = _recordable(model)
    ours = attribute(model, x, target, preset, record=names)
    canon = [_resnet_small_canonizer()] if kind == "resnet" else [SequentialMergeBatchNorm()]
    out_rel = torch.zeros_like(ours.logits).scatter_(1, target[:, None], 1.0) * ours.logits
    rel, layers = _zennit(model, x, out_rel, ZENNIT[preset](canon), names)
    _assert_close(ours.input, rel, f"{kind}/{preset} input")
    for name in names:
        _assert_close(ours.output[name], layers[name], f"{kind}/{preset} {name}")


@pytest.mark.parametrize("preset", ["epsilon", "epsilon_gamma_box"])
def test_torchvision_resnet18_matches_zennit(preset: str, inputs) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).double().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = BN_EPS
            m.running_var.uniform_(0.5, 1.5)
            m.running_mean.normal_(0, 0.1)
    x = inputs(batch=2, shape=(3, 32, 32))
    ours = attribute(model, x, torch.tensor([1, 3]), preset, record=["layer1.0.conv2", "fc"])
    out_rel = torch.zeros_like(ours.logits)
    out_rel[[0, 1], [1, 3]] = ours.logits[[0, 1], [1, 3]]
    rel, layers = _zennit(
        model, x, out_rel, ZENNIT[preset]([ResNetCanonizer()]), ["layer1.0.conv2", "fc"]
    )
    _assert_close(ours.input, rel, f"resnet18/{preset} input")
    for name in ("layer1.0.conv2", "fc"):
        _assert_close(ours.output[name], layers[name], f"resnet18/{preset} {name}")


def test_float_output_relevance_matches_zennit(build, inputs) -> None:
    model, x = build("vgg", bn_eps=BN_EPS), inputs()
    out_rel = torch.randn(3, 3, dtype=torch.float64)
    ours = attribute(model, x, out_rel, "epsilon_plus")
    rel, _ = _zennit(model, x, out_rel, ZENNIT["epsilon_plus"]([SequentialMergeBatchNorm()]), [])
    _assert_close(ours.input, rel, "float output relevance")
