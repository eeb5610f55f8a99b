"""absLRP: closed form on ReLU networks, contrastive map, residual branches."""

from __future__ import annotations

import torch
from torch import nn

from prune.lrp import attribute
from prune.lrp.composites import AbsLRP


def _closed_form(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """x * gradient with W + sign(x)|W| in layer 1 and 2 W+ in every later layer (ReLU masks)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    h, masks = x.flatten(1), []
    for layer in linears[:-1]:
        z = layer(h)
        masks.append(z > 0)
        h = z.clamp(min=0)
    g = torch.nn.functional.one_hot(target, linears[-1].out_features).to(x)
    for i in range(len(linears) - 1, -1, -1):
        w = linears[i].weight
        if i == 0:
            g = g @ w + x.flatten(1).sign() * (g @ w.abs())
        else:
            g = (g @ (2 * w.clamp(min=0))) * masks[i - 1]
    return (x.flatten(1) * g).reshape(x.shape)


def _unit(t: torch.Tensor) -> torch.Tensor:
    return t / t.flatten(1).abs().sum(1).clamp_min(1e-300).reshape(-1, *([1] * (t.dim() - 1)))


def test_abslrp_matches_closed_form_on_relu_mlp(build, inputs, seed) -> None:
    model, x = build("mlp", seed), inputs(seed)
    target = torch.tensor([0, 2, 1])
    res = attribute(model, x, target, AbsLRP(contrastive=False))
    # per-layer rescaling only multiplies by a positive number per sample: compare unit-L1 maps
    torch.testing.assert_close(
        _unit(res.input), _unit(_closed_form(model, x, target)), rtol=1e-9, atol=1e-12
    )


def test_abslrp_contrastive_is_target_minus_rest(build, inputs) -> None:
    model, x = build("vgg"), inputs()
    target = torch.tensor([1, 0, 2])
    contrastive = attribute(model, x, target, "abslrp", record=["features.0"])
    single = attribute(model, x, target, AbsLRP(contrastive=False), record=["features.0"])
    rest = torch.ones(3, 3, dtype=torch.float64).scatter_(1, target[:, None], 0.0)
    others = attribute(model, x, rest, AbsLRP(contrastive=False), record=["features.0"])
    torch.testing.assert_close(contrastive.input, single.input - others.input)
    torch.testing.assert_close(
        contrastive.output["features.0"], single.output["features.0"] - others.output["features.0"]
    )


def test_abslrp_layers_have_unit_l1_and_branches_rescale_separately(build, inputs) -> None:
    model, x = build("resnet"), inputs()
    names = ["conv1", "layers.1.0.bn2", "layers.1.0.shortcut.1", "fc"]
    res = attribute(model, x, None, AbsLRP(contrastive=False), record=names)
    for name in ["conv1", "layers.1.0.bn2", "layers.1.0.shortcut.1"]:
        norms = res.output[name].flatten(1).abs().sum(1)
        torch.testing.assert_close(norms, torch.ones_like(norms), msg=name)
    torch.testing.assert_close(
        res.input.flatten(1).abs().sum(1), torch.ones(3, dtype=torch.float64)
    )
