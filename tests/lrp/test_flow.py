"""The fast relevance flow (native autograd, rescale fused into ReLU) equals the reference forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prune.lrp import attribute
from prune.lrp.composites import LayerMap, base_layer_map
from prune.lrp.rules import AlphaBeta
from prune.lrp.types import LINEAR_TYPES

PRESETS = ["epsilon", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"]


def _reference(model, x, preset, record):
    """The same attribution from the rules' reference forms."""
    return attribute(model, x, composite=preset, record=record, backend="reference")


class _Fork(nn.Module):
    """A pre-activation read by a ReLU and by a sum, and a ReLU read twice: both must stay right."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        z = self.conv2(a)
        y = torch.relu(z) + z  # z has two consumers: a ReLU and a sum
        y = y + torch.relu(y)
        return self.fc(torch.flatten(self.pool(torch.relu(y)), 1))


@pytest.mark.parametrize("preset", PRESETS)
def test_fast_flow_matches_reference(build, inputs, kind, preset) -> None:
    model = build(kind)
    x = inputs()
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    fast = attribute(model, x, composite=preset, record=layers)
    ref = _reference(model, x, preset, layers)
    torch.testing.assert_close(fast.input, ref.input, rtol=1e-9, atol=1e-12)
    for name in layers:
        torch.testing.assert_close(fast.output[name], ref.output[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("preset", PRESETS)
def test_fast_flow_handles_forks(inputs, preset) -> None:
    torch.manual_seed(0)
    model = _Fork().double().eval()
    x = inputs()
    fast = attribute(model, x, composite=preset, record=["conv2"])
    ref = _reference(model, x, preset, ["conv2"])
    torch.testing.assert_close(fast.input, ref.input, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fast.output["conv2"], ref.output["conv2"], rtol=1e-9, atol=1e-12)
    unrecorded = attribute(model, x, composite=preset)
    torch.testing.assert_close(unrecorded.input, ref.input, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("preset", PRESETS)
def test_fused_flow_matches_reference(build, inputs, kind, preset) -> None:
    """Nothing recorded: every ReLU fuses with the rule before it (recording switches that off)."""
    model = build(kind)
    x = inputs()
    fused = attribute(model, x, composite=preset)
    ref = _reference(model, x, preset, [])
    torch.testing.assert_close(fused.input, ref.input, rtol=1e-9, atol=1e-12)


class _FirstFork(nn.Module):
    """The first layer's output read by a ReLU and by a sum (its rule's scale node is bypassed by
    the ReLU only)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 3)

    def forward(self, x):
        z = self.conv1(x)
        return self.fc(torch.flatten(torch.relu(z) + z, 1))


@pytest.mark.parametrize("preset", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_plus"])
def test_first_layer_relu_fusion_with_another_consumer(inputs, preset) -> None:
    torch.manual_seed(0)
    model = _FirstFork().double().eval()
    x = inputs()
    fused = attribute(model, x, torch.tensor([0, 1, 2]), composite=preset)
    unfused = attribute(model, x, torch.tensor([0, 1, 2]), composite=preset, record=["conv1"])
    torch.testing.assert_close(fused.input, unfused.input, rtol=1e-9, atol=1e-12)
    assert fused.input.abs().sum() > 0


@pytest.mark.parametrize(("kind_", "batch"), [("mlp", 3), ("lenet", 3), ("lenet", 19)])
def test_alpha_beta_recomputed_scales_equal_kept_ones(
    monkeypatch, build, inputs, kind_, batch
) -> None:
    """A first layer may rebuild its alpha-beta scales in the backward instead of keeping them,
    in slices of the batch (19 rows: uneven slices); the relevance is the same, also where a
    whole receptive field is zero (z- = 0)."""
    from prune.lrp.fast import linear as rules
    from prune.lrp.fast import specs

    model = build(kind_)
    x = inputs(batch=batch)
    x[0, :, :6, :6] = 0.0  # zero receptive fields: z- == 0 exactly there
    composite = LayerMap([*base_layer_map(), (LINEAR_TYPES, AlphaBeta())])
    calls = []
    rebuild = specs.AlphaBetaSpec.relu_scale_from
    monkeypatch.setattr(
        specs.AlphaBetaSpec, "relu_scale_from", lambda self, h: calls.append(1) or rebuild(self, h)
    )
    results = []
    for ratio in (0, 10**9):  # always recompute, never
        monkeypatch.setattr(rules, "RECOMPUTE_RATIO", ratio)
        results.append(attribute(model, x, torch.arange(batch) % 3, composite))
    assert calls, "no scale was recomputed"
    torch.testing.assert_close(results[0].input, results[1].input, rtol=1e-9, atol=1e-12)
    reference = attribute(model, x, torch.arange(batch) % 3, composite, backend="reference")
    torch.testing.assert_close(results[0].input, reference.input, rtol=1e-9, atol=1e-12)
    assert torch.isfinite(results[0].input).all()


def test_alpha_beta_rebuilt_layer_with_a_second_consumer(monkeypatch, inputs) -> None:
    """A layer whose stacked output is rebuilt in the backward, read by a ReLU and a sum."""
    from prune.lrp.fast import linear as rules

    torch.manual_seed(0)
    model = _Fork().double().eval()
    x = inputs()
    results = []
    for ratio in (0, 10**9):
        monkeypatch.setattr(rules, "RECOMPUTE_RATIO", ratio)
        for record in ([], ["conv1", "conv2"]):  # a recorded layer is not fused with its ReLU
            results.append(
                attribute(model, x, torch.tensor([0, 1, 2]), "epsilon_alpha2_beta1", record=record)
            )
    for rebuilt, kept in zip(results[:2], results[2:], strict=True):
        torch.testing.assert_close(rebuilt.input, kept.input, rtol=1e-9, atol=1e-12)
        for name, rel in kept.output.items():
            torch.testing.assert_close(rebuilt.output[name], rel, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [1, 3, 8, 9, 19, 128])
def test_batch_slices_cover_every_row_once(n) -> None:
    from prune.lrp.fast.modified import GPU_SLICE_BYTES, SLICES, batch_slices

    rows = [i for s in batch_slices(n) for i in range(n)[s]]
    assert rows == list(range(n)) and len(batch_slices(n)) <= SLICES
    # on a GPU: one slice up to GPU_SLICE_BYTES, then slices of at most that size
    assert batch_slices(n, "cuda", GPU_SLICE_BYTES) == [slice(0, n)]
    big = batch_slices(n, "cuda", 3 * GPU_SLICE_BYTES)
    assert [i for s in big for i in range(n)[s]] == list(range(n))
    assert len(big) == min(n, 3)


@pytest.mark.parametrize("factors", [1, 2, 3])
def test_rescale_computed_in_the_backward_equals_the_ratio(factors) -> None:
    """``rescaled`` computes ``g * z / stab(n z)`` in the backward from ``z`` (a fused addcdiv):
    the value of the ratio's formula, zeros and both signs included."""
    from prune.lrp.fast.flow import rescaled
    from prune.lrp.rules.base import ratio

    torch.manual_seed(0)
    z = torch.randn(64, 9, dtype=torch.float64) * torch.logspace(-8, 2, 9, dtype=torch.float64)
    z[0, :3] = 0.0
    z = z.requires_grad_()
    g = torch.randn_like(z)
    (got,) = torch.autograd.grad(rescaled(z, factors, 1e-6), z, g)
    want = g * ratio(z.detach(), factors * z.detach(), 1e-6)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-300)


def test_rescale_of_a_tensor_changed_in_place_uses_its_earlier_value() -> None:
    """A tensor about to change in place is announced (``RunState.changing``): its rescale node
    takes the scale of the values it saw; a change nobody announced is an error."""
    from prune.lrp.fast.flow import rescaled, self_ratio
    from prune.lrp.state import RunState

    torch.manual_seed(0)
    run = RunState()
    z0 = torch.randn(5, 4, dtype=torch.float64)
    for announce in (True, False):
        z = z0.clone().requires_grad_()
        h = z * 1.0
        out = rescaled(h, 1, 1e-3, run) * 2.0  # its node keeps nothing of the rescaled view
        if announce:
            run.changing(h)
        with torch.no_grad():
            h.detach().add_(10.0)
        g = torch.full_like(z0, 0.5)
        if announce:
            (got,) = torch.autograd.grad(out, z, g)
            torch.testing.assert_close(got, self_ratio(z0, 1e-3))
        else:
            with pytest.raises(RuntimeError, match="changed in place"):
                torch.autograd.grad(out, z, g)


def test_layer_norm_output_changed_in_place_keeps_its_earlier_scale() -> None:
    """LayerNorm's rule computes its rescale in the backward from its output; announced before
    an in-place change, it takes the scale of the output as it was."""
    from prune.lrp.fast.transformer import _LayerNormIdentity
    from prune.lrp.state import RunState

    torch.manual_seed(0)
    x0 = torch.randn(3, 5, dtype=torch.float64)
    g = torch.ones(3, 5, dtype=torch.float64)
    run = RunState()
    x = x0.clone().requires_grad_()
    y = _LayerNormIdentity.apply(x, (5,), None, None, 1e-5, 1e-6, run)
    out = y * 2.0
    run.changing(y)
    with torch.no_grad():
        y.detach().add_(1.0)
    (got,) = torch.autograd.grad(out, x, g)
    x = x0.clone().requires_grad_()
    y = _LayerNormIdentity.apply(x, (5,), None, None, 1e-5, 1e-6, None)
    (want,) = torch.autograd.grad(y * 2.0, x, g)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
