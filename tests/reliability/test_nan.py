"""Non-finite relevance is caught (naming the layer); all-zero layers follow a stated rule."""

from __future__ import annotations

import pytest
import torch

from prune.callbacks.relevance import NonFiniteRelevanceError, check_finite
from prune.lrp.stats import RelevanceStats
from prune.models import MLP
from prune.pruning.criteria.lrp import LRPCriterion
from prune.pruning.pruner import Pruner
from prune.run.build import build_datamodule, build_module
from prune.run.explain import explain
from tests.conftest import compose_cfg
from tests.reliability.helpers import TINY_PRUNE

RECORD = ["layers.0", "layers.2"]


def _stats(layer0: torch.Tensor, layer2: torch.Tensor) -> RelevanceStats:
    stats = RelevanceStats(num_classes=2)
    stats.update(None, {"layers.0": layer0[None], "layers.2": layer2[None]}, torch.tensor([0]))
    return stats


def test_check_finite_names_the_layer_nearest_the_output_first():
    stats = _stats(torch.tensor([1.0, float("nan"), 2.0]), torch.tensor([float("inf"), 1.0]))
    with pytest.raises(NonFiniteRelevanceError, match=r"'layers.2' \(1 of 2 units\), 'layers.0'"):
        check_finite(stats)
    check_finite(_stats(torch.ones(3), torch.zeros(2)))  # finite (even all-zero) passes


def test_nan_weights_stop_the_explain_pass_before_any_pruning():
    cfg = compose_cfg("train", TINY_PRUNE)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    with torch.no_grad():
        module.net.layers[2].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteRelevanceError, match="'layers.2'.*nothing was pruned"):
        explain(cfg, module, dm, "epsilon", record=RECORD)


def test_criterion_refuses_non_finite_relevance():
    net = MLP((1, 2, 2), 2, hidden=(3, 2))
    stats = _stats(torch.tensor([1.0, 2.0, float("inf")]), torch.ones(2))
    pruner = Pruner(LRPCriterion(), ratio=0.4)
    with pytest.raises(ValueError, match="'layers.0' is NaN or infinite for 1 of 3"):
        pruner.plan(net, stats=stats)


def test_all_zero_layer_is_cut_first_but_keeps_min_width():
    net = MLP((1, 2, 2), 2, hidden=(6, 4))
    stats = _stats(torch.arange(1.0, 7.0), torch.zeros(4))
    pruner = Pruner(LRPCriterion(), ratio=0.5, min_width=1)  # keep 5 of 10 units
    with pytest.warns(RuntimeWarning, match="'layers.2' is zero for every unit"):
        plan = pruner.plan(net, stats=stats)
    assert len(plan.keep["layers.2"]) == 1  # cut to min_width, never to nothing
    assert plan.keep["layers.0"] == [2, 3, 4, 5]  # the four most relevant units


@pytest.mark.parametrize("precision", ["bf16-mixed"])
def test_mixed_precision_still_explains_in_float32(precision):
    cfg = compose_cfg("train", TINY_PRUNE)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    reference = explain(cfg, module, dm, "epsilon", record=RECORD)
    mixed_cfg = compose_cfg("train", [*TINY_PRUNE, f"trainer.precision={precision}"])
    mixed = explain(mixed_cfg, module, dm, "epsilon", record=RECORD)
    for name in RECORD:  # bf16 arithmetic would differ by ~1e-2 relative
        torch.testing.assert_close(
            mixed.channels[name], reference.channels[name], rtol=1e-5, atol=0
        )
    torch.testing.assert_close(mixed.input_abs, reference.input_abs, rtol=1e-5, atol=1e-12)
