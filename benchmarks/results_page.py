"""The results page (``docs/results.md``): its prose, with the figures of the summaries filled in.

Each section reads one or two summary files and is left out where they are missing; the sections
live in ``results_pruning.py``, ``results_fewshot.py``, ``results_vit.py`` and
``results_explanations.py``, what they share in ``results_common.py``.
"""

from __future__ import annotations

from page_text import Summaries
from results_explanations import explanations
from results_fewshot import fewshot
from results_pruning import (
    dense_models,
    finetuned_pruning,
    headline,
    input_pruning,
    lenet_channels,
)
from results_vit import vit_fewshot

__all__ = ["SECTIONS", "headline", "render"]

INTRO = """\
# Results

All figures are test accuracy on the official 10,000-image test set of full MNIST (of
Fashion-MNIST where the table says so), FLOPs as defined in
[Getting started](getting-started.md#outputs) (2 × MACs of convolutions and matrix products).
They come from the `results.json` files written by the commands shown, summarised into
`benchmarks/summaries/` (`python benchmarks/summarize_sweeps.py ... --summary`); every table
says which commands reproduce it, on which machine and when it was measured. Mean ± std over
seeds where more than one seed was run; a single number is one seed (`n` says how many)."""


SECTIONS = [
    dense_models,
    input_pruning,
    lenet_channels,
    finetuned_pruning,
    fewshot,
    vit_fewshot,
    explanations,
]


def render(summaries: Summaries) -> str:
    """The whole page: the intro, then every section whose summaries are there."""
    parts = [INTRO] + [text for section in SECTIONS if (text := section(summaries))]
    return "\n\n".join(parts) + "\n"
