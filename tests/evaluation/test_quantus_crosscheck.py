"""Our pixel flipping and AOPC against Quantus (Hedstroem et al. 2023) on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prune.evaluation.methods import GradientXInput
from prune.evaluation.pixel_flipping import aopc, flip_curve, flip_fractions

if not hasattr(np, "trapz"):  # Quantus calls np.trapz, removed in NumPy 2.4
    np.trapz = np.trapezoid  # noqa: NPY201

quantus = pytest.importorskip("quantus")

BASELINE = -0.5  # removal value in normalised space, passed to Quantus as a number


@pytest.fixture
def setup():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3)
    ).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 8, 8, generator=g)
    y = net(x).argmax(1)
    a = GradientXInput()(net, x, y)  # continuous values: no ties, one ranking
    return net, x, y, a


def test_pixel_flipping_curve_matches_quantus_pixel_flipping(setup):
    net, x, y, a = setup
    metric = quantus.PixelFlipping(
        features_in_step=4,
        perturb_baseline=BASELINE,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    theirs = np.array(
        metric(
            model=net,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a.numpy(),
            device="cpu",
            softmax=True,
            channel_first=True,
        )
    )  # (B, 16): softmax of y after each step of 4 pixels, most relevant first
    fill = torch.tensor(BASELINE)
    ours = flip_curve(net, x, a, y, flip_fractions(16), fill, "morf", "probability")
    # same float32 model and inputs; only summation order may differ
    np.testing.assert_allclose(ours[:, 1:].numpy(), theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_aopc_matches_quantus_region_perturbation(setup, order):
    net, x, y, a = setup
    metric = quantus.RegionPerturbation(
        patch_size=1,
        regions_evaluation=64,
        order=order,
        perturb_baseline=BASELINE,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    diffs = np.array(
        metric(
            model=net,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a.numpy(),
            device="cpu",
            softmax=True,
            channel_first=True,
        )
    )  # (B, 64): f(x) - f(x^k) for k = 1..64, one pixel per region
    # Samek et al. 2017, eq. 12: AOPC = 1/(L+1) sum_{k=0..L} (f(x) - f(x^k)), the k=0 term is 0
    theirs = diffs.sum(1) / (diffs.shape[1] + 1)
    curve = flip_curve(net, x, a, y, flip_fractions(64), torch.tensor(BASELINE), order)
    np.testing.assert_allclose(aopc(curve).numpy(), theirs, atol=1e-5, rtol=1e-5)
