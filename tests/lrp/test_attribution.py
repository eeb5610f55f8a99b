"""The attribute entry point: lifecycle, targets, dtypes, errors and the diagnostic."""

from __future__ import annotations

import gc

import pytest
import torch
import torchvision
from torch import nn

from prune.lrp import (
    COMPOSITES,
    Explainer,
    UnsupportedLayerError,
    attribute,
    get_composite,
    relevance_report,
)
from prune.lrp.composites import LayerMap, base_layer_map
from prune.lrp.rules import LRP0, AlphaBeta
from prune.lrp.types import LINEAR_TYPES


def _no_leftovers(model: nn.Module) -> None:
    for name, m in model.named_modules():
        hooks = (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks)
        assert not any(hooks), f"hook left on {name!r}"
        assert "forward" not in m.__dict__, f"forward wrapper left on {name!r}"


@pytest.mark.parametrize("preset", sorted(COMPOSITES))
def test_attribute_restores_model_exactly(kind, preset, build, inputs) -> None:
    model, x = build(kind), inputs()
    model.train()
    model.get_submodule(next(n for n, _ in model.named_modules() if n)).eval()  # mixed modes
    modes = {n: m.training for n, m in model.named_modules()}
    params = {n: p for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        out_before = model.eval()(x)
    model.train()
    for n, m in model.named_modules():
        m.training = modes[n]
    attribute(
        model,
        x,
        torch.tensor([0, 1, 2]),
        preset,
        record=[n for n, _ in model.named_modules() if n][:3],
    )
    _no_leftovers(model)
    assert {n: m.training for n, m in model.named_modules()} == modes
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before), "state_dict changed"
    assert all(p is params[n] for n, p in model.named_parameters()), "parameters replaced"
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), out_before, rtol=0, atol=0)


def test_lrp0_equals_gradient_times_input(kind, build, inputs) -> None:
    if kind in ("vgg", "resnet"):
        pytest.skip("BatchNorm merges with its shift as a bias; gradient x input then differs")
    model, x = build(kind), inputs()
    composite = LayerMap([*base_layer_map(0.0), (LINEAR_TYPES, LRP0())])
    res = attribute(model, x, torch.tensor([2, 0, 1]), composite)
    xx = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(xx)[[0, 1, 2], [2, 0, 1]].sum(), xx)
    torch.testing.assert_close(res.input, xx.detach() * grad, rtol=1e-12, atol=1e-14)


def test_several_targets_per_sample_match_single_calls(build, inputs) -> None:
    model, x = build("vgg"), inputs()
    targets = torch.tensor([[0, 1, 2], [2, 2, 0], [1, 0, 1]])
    res = attribute(model, x, targets, "epsilon_gamma_box", record=["features.0"])
    assert res.input.shape == (3, 3, *x.shape[1:])
    assert res.output["features.0"].shape[:2] == (3, 3)
    for t in range(3):
        single = attribute(model, x, targets[:, t], "epsilon_gamma_box", record=["features.0"])
        torch.testing.assert_close(res.input[:, t], single.input, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(res.output["features.0"][:, t], single.output["features.0"])


def test_one_hot_target_scales_index_target(build, inputs) -> None:
    model, x = build("lenet"), inputs()
    idx = torch.tensor([0, 1, 2])
    by_index = attribute(model, x, idx, "epsilon_plus")
    one_hot = torch.nn.functional.one_hot(idx, 3).double()
    by_one_hot = attribute(model, x, one_hot, "epsilon_plus")
    scale = by_index.logits[torch.arange(3), idx].reshape(3, 1, 1, 1)
    torch.testing.assert_close(by_one_hot.input * scale, by_index.input, rtol=1e-9, atol=1e-12)


def test_softmax_gradient_target_is_the_probability_gradient(build, inputs) -> None:
    """SGLRP's output relevance is dp_t/dz and sums to zero; LRP-0 on a ReLU net then spreads
    each logit's share R_k over its contributions: x times the gradient of sum_k R_k / z_k z_k."""
    from functools import partial

    from prune.lrp import softmax_gradient

    model, x = build("lenet"), inputs()
    labels = torch.tensor([2, 0, 1])
    seed = softmax_gradient(model(x), labels)
    torch.testing.assert_close(seed.sum(1), torch.zeros(3, dtype=seed.dtype), atol=1e-15, rtol=0)
    composite = LayerMap([*base_layer_map(0.0), (LINEAR_TYPES, LRP0())])
    res = attribute(model, x, partial(softmax_gradient, labels=labels), composite)
    torch.testing.assert_close(res.explained, torch.zeros(3, dtype=x.dtype), atol=1e-15, rtol=0)
    xx = x.clone().requires_grad_()
    logits = model(xx)
    (grad,) = torch.autograd.grad((logits * (seed / logits).detach()).sum(), xx)
    torch.testing.assert_close(res.input, xx.detach() * grad, rtol=1e-10, atol=1e-14)


def test_logit_margin_target_explains_the_margin_over_the_strongest_rival(
    build, inputs, unbiased
) -> None:
    """The margin seed is z_t at the target and -z_r at the largest other logit; under LRP-0
    with zero biases the input relevance is gradient x input of z_t - z_r and sums to it."""
    from functools import partial

    from prune.lrp import logit_margin

    model, x = unbiased(build("lenet")), inputs()
    labels = torch.tensor([2, 0, 1])
    logits = model(x).detach()
    seed = logit_margin(logits, labels)
    rival = logits.scatter(1, labels[:, None], float("-inf")).argmax(1)
    rows = torch.arange(3)
    margin = logits[rows, labels] - logits[rows, rival]
    torch.testing.assert_close(seed.sum(1), margin, rtol=1e-12, atol=0)
    assert int((seed != 0).sum()) == 6 and bool((rival != labels).all())
    composite = LayerMap([*base_layer_map(0.0), (LINEAR_TYPES, LRP0())])
    res = attribute(model, x, partial(logit_margin, labels=labels), composite)
    xx = x.clone().requires_grad_()
    out = model(xx)
    (grad,) = torch.autograd.grad((out[rows, labels] - out[rows, rival]).sum(), xx)
    torch.testing.assert_close(res.input, xx.detach() * grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(res.input.flatten(1).sum(1), margin, rtol=1e-9, atol=1e-12)
    one_class = logit_margin(logits[:, :1], torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(one_class, logits[:, :1])


def test_log_probability_target_explains_the_linearised_log_probability(
    build, inputs, unbiased
) -> None:
    """The seed is z_k (delta_kt - p_k): logits times the gradient of log p_t, summing to
    z_t - sum_k p_k z_k. Under LRP-0 with zero biases a unit's relevance is activation x
    gradient of that sum with p held fixed, the signed Taylor term of the loss; the input
    relevance is conserved."""
    from functools import partial

    from prune.lrp import log_probability

    model, x = unbiased(build("lenet")), inputs()
    labels = torch.tensor([2, 0, 1])
    logits = model(x).detach()
    seed = log_probability(logits, labels)
    p = logits.softmax(1)
    rows = torch.arange(3)
    torch.testing.assert_close(
        seed.sum(1), logits[rows, labels] - (p * logits).sum(1), rtol=1e-12, atol=1e-12
    )
    xl = logits.clone().requires_grad_()
    (g,) = torch.autograd.grad(xl.log_softmax(1)[rows, labels].sum(), xl)
    torch.testing.assert_close(seed, logits * g, rtol=1e-12, atol=1e-12)
    composite = LayerMap([*base_layer_map(0.0), (LINEAR_TYPES, LRP0())])
    res = attribute(model, x, partial(log_probability, labels=labels), composite, ["features.3"])
    xx = x.clone().requires_grad_()
    seen = []
    handle = model.features[3].register_forward_hook(lambda _m, _i, a: seen.append(a))
    out = model(xx)
    handle.remove()
    grad, grad_a = torch.autograd.grad((out * g).sum(), (xx, seen[0]))
    torch.testing.assert_close(res.input, xx.detach() * grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(
        res.output["features.3"], seen[0].detach() * grad_a, rtol=1e-10, atol=1e-14
    )
    torch.testing.assert_close(res.input.flatten(1).sum(1), seed.sum(1), rtol=1e-9, atol=1e-12)
    half = log_probability(logits.half(), labels)
    assert half.dtype == torch.float16


def test_inference_mode_raises_clear_error(build, inputs) -> None:
    model, x = build("mlp"), inputs()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode=False"):
        attribute(model, x, None, "epsilon")


def test_no_grad_caller_still_works(build, inputs) -> None:
    model, x = build("mlp"), inputs()
    with torch.no_grad():
        res = attribute(model, x, None, "epsilon")
    assert res.input.abs().sum() > 0


def test_unsupported_layer_is_named(inputs) -> None:
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(256, 8), nn.LayerNorm(8), nn.Linear(8, 3)
    ).double()
    with pytest.raises(UnsupportedLayerError, match=r"2 \(LayerNorm\)"):
        attribute(model, inputs(), None, "epsilon")
    _no_leftovers(model)


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(256, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x.flatten(1)))  # a functional op without a rule


def test_unsupported_functional_op_is_named(inputs) -> None:
    model = _Scaled().double()
    with pytest.raises(UnsupportedLayerError, match="'tanh'"):
        attribute(model, inputs(), None, "epsilon")
    _no_leftovers(model)


def test_float32_and_autocast_keep_float32_relevance(build, inputs) -> None:
    model, x = build("lenet").float(), inputs().float()
    plain = attribute(model, x, None, "epsilon_plus")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = attribute(model, x, None, "epsilon_plus")
    assert plain.input.dtype == cast.input.dtype == torch.float32
    torch.testing.assert_close(cast.input, plain.input)
    assert attribute(build("lenet"), inputs(), None, "epsilon").input.dtype == torch.float64


@pytest.mark.parametrize("build_tv", [torchvision.models.resnet18, torchvision.models.vgg11_bn])
def test_torchvision_models_are_explainable(build_tv) -> None:
    model = build_tv(num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    res = attribute(
        model,
        x,
        torch.tensor([0, 4]),
        "epsilon_plus_flat",
        record=["features.0" if hasattr(model, "features") else "conv1"],
    )
    assert torch.isfinite(res.input).all() and res.input.abs().sum() > 0
    _no_leftovers(model)


def test_relevance_report_lists_layers(build, inputs) -> None:
    text = relevance_report(build("lenet"), inputs(), None, "epsilon")
    assert "<explained output>" in text and "features.0" in text and "<input>" in text


def test_class_indices_must_match_the_batch(build, inputs) -> None:
    model, x = build("mlp"), inputs()  # a batch of 3
    with pytest.raises(ValueError, match="2 class indices for a batch of 3"):
        attribute(model, x, torch.tensor([0, 1]), "epsilon")


def test_registry_and_validation() -> None:
    assert set(COMPOSITES) >= {
        "epsilon",
        "epsilon_plus",
        "epsilon_plus_flat",
        "epsilon_gamma_box",
        "epsilon_alpha2_beta1",
        "epsilon_alpha2_beta1_flat",
        "abslrp",
    }
    for name in COMPOSITES:
        get_composite(name)  # zero required arguments
    with pytest.raises(KeyError, match="choose from"):
        get_composite("nope")
    with pytest.raises(ValueError, match="alpha - beta"):
        AlphaBeta(alpha=2.0, beta=2.0)


@pytest.mark.parametrize("preset", ["epsilon", "epsilon_alpha2_beta1", "epsilon_gamma_box"])
def test_explainer_reused_equals_attribute_and_follows_the_weights(kind, preset, build, inputs):
    model, x = build(kind), inputs()
    target = torch.tensor([0, 1, 2])
    record = [n for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)][:2]
    explainer = Explainer(model, preset, record)
    for _ in range(2):  # one explainer, several batches
        res, ref = explainer(x, target), attribute(model, x, target, preset, record)
        torch.testing.assert_close(res.input, ref.input, rtol=0, atol=0)
        for name in record:
            torch.testing.assert_close(res.output[name], ref.output[name], rtol=0, atol=0)
        _no_leftovers(model)
        with torch.no_grad():  # weights and BatchNorm statistics may change between batches
            for p in model.parameters():
                p.mul_(1.1)
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                    m.running_var.mul_(2.0)
    model.train()
    explainer(x, target)
    assert all(m.training for m in model.modules())


def test_explainer_checks_layers_when_built(inputs) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 4), nn.Softmax(1), nn.Linear(4, 3))
    with pytest.raises(UnsupportedLayerError, match=r"2 \(Softmax\)"):
        Explainer(model, "epsilon")
    with pytest.raises(KeyError, match="nope"):
        Explainer(nn.Sequential(nn.Flatten(), nn.Linear(256, 3)), "epsilon", record=["nope"])
    _no_leftovers(model)


def _tensors_in_memory() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_recording_leaves_no_graph_alive(kind, build, inputs) -> None:
    """Each pass frees what it built, without waiting for the cycle collector. (A record hook that
    referenced its own tensor made a cycle through the autograd node that the collector cannot
    see at all: every explained batch's graph stayed in memory.)"""
    model, x = build(kind), inputs()
    record = [n for n, m in model.named_modules() if n and next(m.children(), None) is None]
    explainer = Explainer(model, "epsilon_plus_flat", record)
    for _ in range(2):
        explainer(x, torch.tensor([0, 1, 2]))
    gc.collect()
    gc.disable()  # garbage in reference cycles stays countable
    try:
        before = _tensors_in_memory()
        for _ in range(4):
            explainer(x, torch.tensor([0, 1, 2]))
        grown = _tensors_in_memory() - before
    finally:
        gc.enable()
    assert grown < len(record)  # a leak keeps at least one tensor per layer and pass
