"""The floor of benchmarks/abslrp_floor.py runs exactly absLRP's matrix products.

``benchmarks/lrp_speed.py`` times it beside the ``abslrp`` preset as the least any absLRP with
twin products pays: that holds only if it runs the same products as the engine, which this test
counts on a tiny ViT, operation by operation, with torch's own FLOP formulas.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from prune.lrp import Explainer
from prune.models.vit import ViT

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


class _Flops(TorchDispatchMode):
    """FLOPs per operation (matrix products and convolutions) of what runs inside."""

    def __init__(self) -> None:
        super().__init__()
        self.flops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            name = str(func._overloadpacket)
            self.flops[name] = self.flops.get(name, 0) + count(*args, **kwargs, out_val=out)
        return out


def _floor_class():
    spec = importlib.util.spec_from_file_location("abslrp_floor", BENCHMARKS / "abslrp_floor.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("abslrp_floor", module)
    spec.loader.exec_module(module)
    return module.ProductFloor


def test_the_floor_runs_the_products_of_abslrp() -> None:
    torch.manual_seed(0)
    model = ViT((1, 8, 8), 3, patch_size=4, dim=8, depth=2, heads=2).eval()
    x, target = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    explainer = Explainer(model, "abslrp")
    explainer(x, target)  # traced on the first call
    floor = _floor_class()(model, x)
    with _Flops() as ours:
        explainer(x, target)
    with _Flops() as products:
        floor()
    assert ours.flops == products.flops
    assert set(ours.flops) >= {"aten.mm", "aten.bmm", "aten.convolution_backward"}


def test_the_flop_ratio_is_the_products_over_the_input_gradient() -> None:
    torch.manual_seed(0)
    model = ViT((1, 8, 8), 3, patch_size=4, dim=8, depth=2, heads=2).eval()
    x, target = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    floor = _floor_class()(model, x)
    with _Flops() as products:
        floor()
    with _Flops() as gradient:
        leaf = x.clone().requires_grad_()
        torch.autograd.grad(model(leaf).gather(1, target[:, None]).sum(), leaf)
    ratio = floor.flop_ratio(target)
    assert ratio == sum(products.flops.values()) / sum(gradient.flops.values())
    # five products per linear layer against two: the ratio is near 2.5
    assert 2.0 < ratio < 3.0
    assert all(p.requires_grad for p in model.parameters())  # left as they were
