"""The sweep figure draws every criterion's rounds, the dense point and the pre-fine-tuning
accuracies, in percent, titled with the model and the data source."""

from __future__ import annotations

import pytest

from prune.run.sweep_plot import draw, trajectory


def _results(seed_shift: float) -> dict:
    rounds = [{"round": 0, "test/acc": 0.98 + seed_shift, "cost/flops": 1000.0}]
    for k, flops in ((1, 500.0), (2, 250.0)):
        acc = 0.97 - 0.01 * k + seed_shift
        rounds.append(
            {"round": k, "test/acc": acc, "test/acc_pruned": acc - 0.1, "cost/flops": flops}
        )
    return {"rounds": rounds}


def _row(criterion: str, seed_shift: float) -> dict:
    return {
        "criterion": criterion,
        "keep": 100,
        "ratio_config": None,
        "model": "MLP",
        "data_source": "MNIST",
        "trajectory": trajectory(_results(seed_shift)),
    }


def test_figure_draws_trajectories_mean_and_spread_over_seeds():
    fig = draw([_row("lrp", 0.0), _row("lrp", 0.02), _row("random", -0.05)])
    (ax,) = fig.axes
    assert ax.get_title() == "MLP on MNIST"
    assert ax.get_ylabel() == "test accuracy (%)"
    handles, labels = ax.get_legend_handles_labels()
    assert {"lrp", "random", "dense", "before fine-tuning"} <= set(labels)
    lrp = handles[labels.index("lrp")][0]  # the errorbar's data line
    # three rounds (dense, 1, 2), the mean over the two seeds, in percent
    assert list(lrp.get_xdata()) == [1000.0, 500.0, 250.0]
    assert lrp.get_ydata()[1] == pytest.approx(100 * (0.96 + 0.98) / 2)
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "none"]
    assert any(list(h.get_ydata()) == pytest.approx([87.0, 86.0]) for h in hollow)
    star = next(line for line in ax.lines if line.get_label() == "dense")
    assert star.get_xdata()[0] == 1000.0


def test_figure_is_none_without_rounds():
    assert draw([{"criterion": "lrp", "trajectory": []}]) is None
