"""LRP on CUDA: the same numbers as on the CPU, float32 relevance under autocast, the relevance
accumulator on a GPU Trainer. Every test here skips without a GPU (CI has none); run them on a
GPU machine with ``python -m pytest tests/lrp/test_cuda.py``."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from prune.lrp import COMPOSITES, Explainer, attribute
from prune.lrp.types import LINEAR_TYPES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _record(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)][:3]


@pytest.mark.parametrize("preset", sorted(COMPOSITES))
def test_cuda_float64_matches_cpu(kind, preset, build, inputs) -> None:
    """Every preset on every model kind: CUDA float64 equals the CPU to float64 rounding."""
    model, x = build(kind), inputs()
    record = _record(model)
    cpu = attribute(model, x, None, preset, record=record)
    gpu = attribute(model.cuda(), x.cuda(), None, preset, record=record)
    torch.testing.assert_close(gpu.input.cpu(), cpu.input, rtol=1e-9, atol=1e-12)
    for name in record:
        torch.testing.assert_close(gpu.output[name].cpu(), cpu.output[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("preset", ["epsilon", "epsilon_plus_flat", "epsilon_gamma_box"])
def test_cuda_float32_explainer_matches_float64(kind, preset, build, inputs) -> None:
    """A reused ``Explainer`` in float32 on the GPU (TF32 off) against the float64 CPU result."""
    model, x = build(kind), inputs()
    record = _record(model)
    ref = attribute(model, x, None, preset, record=record)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        explainer = Explainer(model.float().cuda(), preset, record)
        for _ in range(2):
            res = explainer(x.float().cuda(), None)
            assert res.input.is_cuda and res.input.dtype == torch.float32
            scale = ref.input.abs().max()
            torch.testing.assert_close(
                res.input.double().cpu(), ref.input, rtol=0, atol=1e-4 * scale
            )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_keeps_float32_relevance(kind, dtype, build, inputs) -> None:
    """Under CUDA autocast the relevance comes back in float32 and close to the plain map."""
    model, x = build(kind), inputs(batch=8)
    model, x = model.float().cuda(), x.float().cuda()
    record = _record(model)
    plain = attribute(model, x, None, "epsilon_plus", record=record)
    with torch.autocast("cuda", dtype=dtype):
        cast = attribute(model, x, None, "epsilon_plus", record=record)
    assert cast.input.dtype == torch.float32
    assert all(cast.output[n].dtype == torch.float32 for n in record)
    assert torch.isfinite(cast.input).all()
    cos = torch.nn.functional.cosine_similarity(cast.input.flatten(1), plain.input.flatten(1))
    assert cos.min() > 0.98, cos


def test_accumulator_on_a_gpu_trainer_equals_the_cpu_one() -> None:
    """The callback explains on the module's device: a GPU Trainer sums what a CPU one does."""
    from prune.callbacks.relevance import RelevanceAccumulator, explain_trainer
    from prune.models import LeNet5
    from prune.module import ClassifierModule

    torch.manual_seed(0)
    net = LeNet5((1, 16, 16), 4, channels=(4, 6), hidden=8)
    x, y = torch.rand(40, 1, 16, 16), torch.randint(0, 4, (40,))
    record = ["features.0", "classifier.0"]
    stats = {}
    for accelerator in ("cpu", "gpu"):
        acc = RelevanceAccumulator("epsilon_plus", record, num_classes=4, output="log_probability")
        loader = DataLoader(TensorDataset(x, y), batch_size=16)
        explain_trainer(acc, accelerator=accelerator).validate(
            ClassifierModule(net), loader, verbose=False
        )
        stats[accelerator] = acc.stats
    cpu, gpu = stats["cpu"], stats["gpu"]
    assert gpu.num_samples == cpu.num_samples == 40
    torch.testing.assert_close(gpu.input.cpu(), cpu.input, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gpu.per_class_input.cpu(), cpu.per_class_input, rtol=1e-4, atol=1e-6)
    for name in record:
        torch.testing.assert_close(
            gpu.channels[name].cpu(), cpu.channels[name], rtol=1e-4, atol=1e-6
        )


def _vit(fused: bool) -> torch.nn.Module:
    from prune.models import ViT

    torch.manual_seed(0)
    model = ViT((1, 8, 8), 3, patch_size=4, dim=16, depth=2, heads=4, fused_attention=fused)
    with torch.no_grad():
        model.cls_token.normal_()
    return model.double().eval()


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "sdpa"])
@pytest.mark.parametrize("preset", ["attnlrp", "cp_lrp", "abslrp"])
def test_cuda_vit_matches_cpu(preset, fused) -> None:
    """The transformer composites on a ViT (explicit and fused attention): CUDA float64 equals
    the CPU, heads' and MLP neurons' relevance included."""
    model = _vit(fused)
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    record = ["blocks.0.attn.heads_out", "blocks.1.mlp.fc1"]
    cpu = attribute(model, x, None, preset, record=record)
    gpu = attribute(model.cuda(), x.cuda(), None, preset, record=record)
    torch.testing.assert_close(gpu.input.cpu(), cpu.input, rtol=1e-9, atol=1e-12)
    for name in record:
        torch.testing.assert_close(gpu.output[name].cpu(), cpu.output[name], rtol=1e-9, atol=1e-12)


def test_cuda_vit_heads_are_cut_on_the_gpu() -> None:
    """Head and neuron surgery on a CUDA ViT: its parameters stay on the GPU and the cut model
    equals the same cut on the CPU."""
    from prune.pruning import Pruner, apply_plan
    from prune.pruning.criteria import MagnitudeCriterion

    model = _vit(False)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    pruner = Pruner(MagnitudeCriterion(), "heads_and_neurons", ratio=0.5, global_ranking=False)
    plan = pruner.plan(model)
    cpu = apply_plan(_vit(False), plan)
    gpu = apply_plan(model.cuda(), plan)
    assert all(p.is_cuda for p in gpu.parameters())
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-9, atol=1e-12)
