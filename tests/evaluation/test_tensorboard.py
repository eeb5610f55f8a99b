"""TensorBoard pictures: heatmaps centred at zero with a colour bar, labelled class tiles,
histograms of input and unit relevance, a sharp kept-pixel mask."""

from __future__ import annotations

import torch

from prune.evaluation.tensorboard import keep_mask, log_relevance
from prune.lrp import RelevanceStats


class _Writer:
    """Records what TensorBoard's SummaryWriter would be given."""

    def __init__(self) -> None:
        self.figures, self.histograms = {}, {}

    def add_figure(self, tag, figure, step):
        self.figures[tag] = figure

    def add_histogram(self, tag, values, step):
        self.histograms[tag] = values

    def flush(self):
        pass


class _Logger:
    def __init__(self) -> None:
        self.experiment = _Writer()


def _stats() -> RelevanceStats:
    g = torch.Generator().manual_seed(0)
    per_class = torch.randn(3, 1, 8, 8, generator=g)
    return RelevanceStats(
        num_classes=3,
        input=per_class.sum(0),
        input_abs=per_class.abs().sum(0),
        per_class_input=per_class,
        class_counts=torch.tensor([4.0, 5.0, 6.0]),
        channels={"fc1": torch.randn(16, generator=g)},
    )


def test_heatmaps_have_a_symmetric_diverging_scale_and_a_colour_bar():
    logger = _Logger()
    log_relevance(logger, _stats(), step=1)
    figures = logger.experiment.figures
    assert set(figures) == {"relevance/input", "relevance/input_abs", "relevance/input_per_class"}
    heat = figures["relevance/input"]
    image = heat.axes[0].images[0]
    low, high = image.get_clim()
    assert low == -high and image.get_cmap().name == "bwr"  # white is zero relevance
    assert len(heat.axes) == 2  # the map and its colour bar
    titles = [ax.get_title() for ax in figures["relevance/input_per_class"].axes]
    assert [t for t in titles if t][:3] == ["class 0\nn=4", "class 1\nn=5", "class 2\nn=6"]
    assert set(logger.experiment.histograms) == {"relevance/input_histogram", "relevance/fc1"}


def test_keep_mask_is_upscaled_with_sharp_blocks():
    mask = keep_mask([0, 5], (1, 4, 4), scale=8)
    assert mask.shape == (1, 32, 32)
    assert mask[0, :8, :8].eq(1).all() and mask[0, :8, 8:16].eq(0).all()
