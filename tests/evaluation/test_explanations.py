from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

from prune.evaluation.explanations import evaluate_explanations
from prune.evaluation.figures import save_figure
from prune.evaluation.methods import GradientXInput, get_method


def _run(net, x, y, methods, **kw):
    return evaluate_explanations(
        net,
        x,
        y,
        methods,
        fraction=0.15,
        background=0.0,
        flip_steps=8,
        gae_steps=4,
        batch_size=32,
        **kw,
    )


def test_evaluate_explanations_is_deterministic_and_json_ready(block_net, block_batch, tmp_path):
    x, y = block_batch
    first = _run(block_net, x, y, {"gxi": GradientXInput()})
    second = _run(block_net, x, y, {"gxi": GradientXInput()}, figures=False)
    for name in ("gxi", "random"):
        a = {k: v for k, v in first["table"][name].items() if k != "time_s"}
        b = {k: v for k, v in second["table"][name].items() if k != "time_s"}
        assert a == b
    figs = first.pop("figures")
    assert all(isinstance(f, Figure) for f in figs.values())
    assert save_figure(figs["heatmaps"], tmp_path / "heatmaps.png").stat().st_size > 0
    json.dumps(first)  # everything else is plain JSON
    assert first["markdown"].count("\n") >= 3 and "| gxi |" in first["markdown"]
    assert first["curves"]["gxi"]["fractions"][0] == 0.0


def test_evaluate_explanations_ranks_gradient_x_input_above_random(block_net, block_batch):
    x, y = block_batch
    table = _run(block_net, x, y, {"gxi": GradientXInput()}, figures=False)["table"]
    gxi, rnd = table["gxi"], table["random"]
    assert gxi["flip/aopc_morf"] > rnd["flip/aopc_morf"]
    assert gxi["removal/conf_removed"] < rnd["removal/conf_removed"]
    assert gxi["gae/gae"] > rnd["gae/gae"]


@pytest.mark.parametrize("name", ["lrp_epsilon", "lrp_epsilon_plus", "abslrp"])
def test_evaluate_explanations_ranks_lrp_above_random(block_net, block_batch, name):
    x, y = block_batch
    table = _run(block_net, x, y, {name: get_method(name)}, figures=False)["table"]
    assert table[name]["flip/aopc_morf"] > table["random"]["flip/aopc_morf"]
    assert table[name]["removal/conf_removed"] < table["random"]["removal/conf_removed"]


def test_evaluate_explanations_rejects_bad_batch_size(block_net, block_batch):
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_explanations(block_net, *block_batch, {}, batch_size=0)
