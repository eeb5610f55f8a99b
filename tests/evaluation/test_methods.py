from __future__ import annotations

import pytest
import torch
from torch import nn

import prune.lrp
from prune.evaluation.methods import (
    LRP,
    METHODS,
    Gradient,
    GradientXInput,
    IntegratedGradients,
    RandomAttribution,
    SmoothGrad,
    get_method,
    get_methods,
)
from prune.models import LeNet5

GRADIENT_METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "random"]


def _linear() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(3, 16, generator=g, dtype=torch.float64))
        net[1].bias.copy_(torch.randn(3, generator=g, dtype=torch.float64))
    return net


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(64, 3),
    ).double()


def _inputs(n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64), torch.arange(n) % 3


def test_get_method_unknown_name_lists_choices():
    with pytest.raises(
        KeyError, match=r"unknown attribution method 'saliency_magic'.*gradient_x_i"
    ):
        get_method("saliency_magic")


def test_registry_has_every_lrp_preset_and_gradient_method():
    for name in [*GRADIENT_METHODS, "lrp_epsilon_plus", "lrp_epsilon_gamma_box", "abslrp"]:
        assert name in METHODS
    methods = get_methods({"smoothgrad": {"samples": 2}, "random": None})
    assert methods["smoothgrad"].samples == 2 and methods["smoothgrad"].name == "smoothgrad"


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_method_returns_input_shape_restores_mode_and_leaves_no_grads(name):
    net = _small_cnn().train()
    x, t = _inputs()
    with torch.no_grad():  # callers may hold no_grad; the method enables grad itself
        r = get_method(name)(net, x, t)
    assert r.shape == x.shape and r.dtype == x.dtype and not r.requires_grad
    assert net.training  # mode restored
    assert all(p.grad is None for p in net.parameters())


def test_method_runs_in_eval_mode_so_dropout_is_off():
    net = _small_cnn().train()
    x, t = _inputs()
    first, second = Gradient()(net, x, t), Gradient()(net, x, t)
    torch.testing.assert_close(first, second)  # eval mode: no dropout noise, BN running stats


def test_method_refuses_inference_mode_with_a_clear_message():
    net = _linear()
    x, t = _inputs()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        Gradient()(net, x, t)


def test_gradient_and_gradient_x_input_on_linear_model_equal_weights():
    net = _linear()
    x, t = _inputs()
    w = net[1].weight[t].view_as(x)
    torch.testing.assert_close(Gradient()(net, x, t), w)
    torch.testing.assert_close(GradientXInput()(net, x, t), w * x)
    torch.testing.assert_close(Gradient(absolute=True)(net, x, t), w.abs())


def test_integrated_gradients_is_complete_on_linear_model():
    net = _linear()
    x, t = _inputs()
    r = IntegratedGradients(steps=4, baseline=-0.5)(net, x, t)
    w = net[1].weight[t].view_as(x)
    torch.testing.assert_close(r, w * (x + 0.5))  # exact for a linear model


def test_integrated_gradients_matches_captum_riemann_middle():
    captum = pytest.importorskip("captum.attr")
    net = _small_cnn().eval()
    x, t = _inputs()
    ours = IntegratedGradients(steps=8, baseline=0.0)(net, x, t)
    theirs = captum.IntegratedGradients(net).attribute(
        x, baselines=0.0, target=t, n_steps=8, method="riemann_middle"
    )
    torch.testing.assert_close(ours, theirs)  # float64, same quadrature points


def test_smoothgrad_is_deterministic_per_seed_and_zero_noise_is_gradient():
    net = _small_cnn().eval()
    x, t = _inputs()
    a1 = SmoothGrad(samples=3, seed=7)(net, x, t)
    a2 = SmoothGrad(samples=3, seed=7)(net, x, t)
    a3 = SmoothGrad(samples=3, seed=8)(net, x, t)
    torch.testing.assert_close(a1, a2)
    assert not torch.allclose(a1, a3)
    torch.testing.assert_close(
        SmoothGrad(samples=2, noise_level=0.0)(net, x, t), Gradient()(net, x, t)
    )


def test_random_attribution_is_deterministic_per_seed():
    net = _linear()
    x, t = _inputs()
    assert torch.equal(RandomAttribution(3)(net, x, t), RandomAttribution(3)(net, x, t))
    assert not torch.equal(RandomAttribution(3)(net, x, t), RandomAttribution(4)(net, x, t))


def test_lrp_adapter_calls_engine_with_composite(monkeypatch):
    calls = {}

    class Result:
        def __init__(self, x):
            self.input = 2 * x

    def stub(model, x, target, composite, **kw):
        calls.update(
            composite=composite, kw=kw, grad=torch.is_grad_enabled(), training=model.training
        )
        return Result(x)

    monkeypatch.setattr(prune.lrp, "attribute", stub)
    net = _linear().train()
    x, t = _inputs()
    out = get_method("lrp_epsilon")(net, x, t)
    torch.testing.assert_close(out, 2 * x)
    assert calls == {"composite": "epsilon", "kw": {}, "grad": True, "training": False}
    assert net.training
    assert get_method("abslrp").name == "abslrp"


def test_lrp_unknown_composite_is_rejected_by_name_when_built():
    with pytest.raises(KeyError, match=r"epsilon_typo.*epsilon_plus"):
        LRP("epsilon_typo")
    with pytest.raises(KeyError, match="epsilon_typo"):
        get_method("lrp", composite="epsilon_typo")


def test_every_lrp_composite_is_a_method_named_after_it():
    for composite in prune.lrp.COMPOSITES:
        name = "abslrp" if composite == "abslrp" else f"lrp_{composite}"
        method = get_method(name)
        assert method.composite == composite and method.name == name
    assert get_method("lrp", composite="epsilon").name == "lrp_epsilon"


def test_lrp_epsilon_on_linear_model_without_bias_equals_gradient_x_input():
    net = _linear()
    with torch.no_grad():
        net[1].bias.zero_()
    x, t = _inputs()
    # LRP-epsilon of one linear layer is z_i / (z + eps sign z) * z = x_i w_i up to eps
    torch.testing.assert_close(
        get_method("lrp_epsilon")(net, x, t), GradientXInput()(net, x, t), atol=1e-4, rtol=1e-4
    )


def test_abslrp_target_map_is_the_nonnegative_half_of_the_contrastive_map():
    """On nonnegative inputs absLRP's target map is >= 0 with unit L1 norm per sample, and the
    contrastive map is that map minus the (also unit-norm) map of all other classes."""

    torch.manual_seed(0)
    net = LeNet5(in_shape=(1, 28, 28), num_classes=10).eval().double()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    y = torch.tensor([0, 4, 7])
    target = get_method("abslrp_target").attribute(net, x, y)
    contrastive = get_method("abslrp").attribute(net, x, y)
    assert target.min() >= 0
    assert torch.allclose(target.flatten(1).sum(1), torch.ones(3, dtype=torch.float64))
    rest = target - contrastive  # the map of all other classes
    assert torch.allclose(rest.flatten(1).sum(1), torch.ones(3, dtype=torch.float64))
    assert rest.min() >= -1e-12
