"""The hook-based absLRP of benchmarks/abslrp_hooks.py gives the map of the abslrp composite.

``benchmarks/lrp_speed.py`` times it beside ours on the ViT: the comparison is fair only if
both do the same work, which these tests check on a tiny float64 ViT.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from prune.lrp import attribute
from prune.models.vit import ViT

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "abslrp_hooks.py"


@functools.cache
def _baseline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("abslrp_hooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vit(seed: int, fused: bool = False) -> ViT:
    torch.manual_seed(seed)
    model = ViT((1, 8, 8), 3, patch_size=4, dim=8, depth=2, heads=2, fused_attention=fused)
    model = model.double().eval()
    with torch.no_grad():  # both signs in the LayerNorm weights (the twin takes |w|), a class token
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(-1.5, 1.5)
                m.bias.normal_(0, 0.1)
        model.cls_token.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_hooks_give_the_abslrp_composites_map(seed: int, fused: bool) -> None:
    model = _vit(seed, fused)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([0, 1, 2, 1])
    want = attribute(model, x, target, "abslrp").input
    hooks = _baseline().AbsLRPHooks(model)
    got = hooks(x, target)
    hooks.remove()
    assert got.shape == x.shape
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-10


def test_hooks_come_off_and_leave_the_model_unchanged() -> None:
    model, x = _vit(0), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(x)
    hooks = _baseline().AbsLRPHooks(model)
    torch.testing.assert_close(hooks.forward(x), logits, rtol=1e-12, atol=1e-12)
    hooks(x, torch.tensor([0, 1, 2]))
    assert not hooks.saved  # the saved tensors go after each call
    hooks.remove()
    assert torch.equal(model(x), logits)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
