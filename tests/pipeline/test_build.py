"""Building a run's pieces: box bounds from the data's normalisation, the measure step."""

from __future__ import annotations

import pytest
import torch

from prune.evaluation.cost import Measure
from prune.lrp.composites import EpsilonGammaBox
from prune.run.build import build_composite, build_datamodule, input_bounds
from tests.conftest import FAST, compose_cfg


def test_input_bounds_are_pixels_zero_and_one_normalised():
    assert input_bounds(torch.tensor([0.0]), torch.tensor([1.0])) == {"low": 0.0, "high": 1.0}
    one = input_bounds(torch.tensor([0.5]).view(1, 1, 1), torch.tensor([0.25]).view(1, 1, 1))
    assert one == {"low": -2.0, "high": 2.0}
    per_channel = input_bounds(torch.tensor([0.0, 0.5]), torch.tensor([1.0, 0.5]))
    assert per_channel["low"].shape == (2, 1, 1)  # broadcastable to one sample (C, H, W)
    torch.testing.assert_close(per_channel["low"].flatten(), torch.tensor([0.0, -1.0]))
    torch.testing.assert_close(per_channel["high"].flatten(), torch.tensor([1.0, 1.0]))


def _box(cfg) -> tuple[float, float]:
    composite = build_composite(cfg, build_datamodule(cfg))
    assert isinstance(composite, EpsilonGammaBox)
    rule = composite.first_map[0][1]  # the ZBox of the first convolution
    return rule.low, rule.high


def test_box_bounds_come_from_the_data_unless_the_config_sets_them():
    base = [*FAST, "lrp=epsilon_gamma_box", "data.mean=[0.5]", "data.std=[0.25]"]
    assert _box(compose_cfg("train", base)) == (-2.0, 2.0)
    assert _box(compose_cfg("train", [*base, "lrp.low=-1.5"])) == (-1.5, 2.0)
    # null mean and std: computed on the train split, the bounds follow them
    cfg = compose_cfg("train", [*FAST, "lrp=epsilon_gamma_box", "data.mean=null", "data.std=null"])
    dm = build_datamodule(cfg)
    low, high = _box(cfg)
    assert low == pytest.approx(float(-dm.mean / dm.std), rel=1e-6)
    assert high == pytest.approx(float((1 - dm.mean) / dm.std), rel=1e-6)


def test_composites_without_box_bounds_are_built_as_configured():
    cfg = compose_cfg("train", [*FAST, "lrp=epsilon"])
    assert type(build_composite(cfg, build_datamodule(cfg))).__name__ == "EpsilonOnly"


def test_measure_devices_auto_follow_the_run():
    assert Measure().devices(gpu=False) == ["cpu"]
    assert Measure().devices(gpu=True) == ["cpu", "cuda"]
    assert Measure(latency_devices=["cpu"]).devices(gpu=True) == ["cpu"]
    figures = Measure(latency_batches=[1], latency_repeats=1)(torch.nn.Linear(4, 2), (4,))
    assert figures["cost/flops"] == 2 * 4 * 2 and "cost/latency_ms_b1_cpu" in figures
