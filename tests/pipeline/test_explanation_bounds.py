"""The explanation step's box-rule methods take their bounds from the data, as the run does."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from prune.evaluation.methods import get_methods
from prune.run.explanations import with_data_bounds


def test_box_rule_methods_get_the_datas_bounds() -> None:
    dm = SimpleNamespace(mean=torch.tensor([0.5]), std=torch.tensor([0.25]))
    methods = with_data_bounds(get_methods(["lrp_epsilon_gamma_box", "lrp_epsilon"]), dm)
    composite = methods["lrp_epsilon_gamma_box"].composite
    box = composite.first_map[0][1]
    assert (box.low, box.high) == pytest.approx((-2.0, 2.0))
    assert methods["lrp_epsilon"].composite == "epsilon"  # no bounds to take
    assert get_methods(["lrp_epsilon_gamma_box"])["lrp_epsilon_gamma_box"].composite == (
        "epsilon_gamma_box"
    )  # the registry's method is left as it was
