"""Pictures of dataset-level relevance for TensorBoard: heatmaps, kept-pixel masks, histograms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from prune.lrp import RelevanceStats


def heatmap(relevance: Tensor) -> Tensor:
    """Signed relevance ``(C, H, W)`` -> RGB ``(3, H, W)``: red positive, blue negative."""
    r = relevance.float().sum(0) if relevance.dim() == 3 else relevance.float()
    scale = r.abs().max().clamp_min(1e-12)
    r = r / scale
    pos, neg = r.clamp(min=0), (-r).clamp(min=0)
    return torch.stack([1 - neg, 1 - pos - neg, 1 - pos]).clamp(0, 1)


def class_grid(per_class: Tensor, columns: int = 5) -> Tensor:
    """Heatmaps of ``(K, C, H, W)`` per-class relevance tiled into one image."""
    tiles = [heatmap(r) for r in per_class]
    k, (_, h, w) = len(tiles), tiles[0].shape
    rows = (k + columns - 1) // columns
    grid = torch.ones(3, rows * (h + 2), columns * (w + 2))
    for i, tile in enumerate(tiles):
        y, x = divmod(i, columns)
        grid[:, y * (h + 2) + 1 : y * (h + 2) + 1 + h, x * (w + 2) + 1 : x * (w + 2) + 1 + w] = tile
    return grid


def keep_mask(input_keep: Sequence[int], in_shape: Sequence[int]) -> Tensor:
    """White where a pixel is kept, black where it is pruned: ``(1, H, W)``."""
    mask = torch.zeros(int(torch.tensor(in_shape).prod()))
    mask[torch.as_tensor(list(input_keep), dtype=torch.long)] = 1.0
    return mask.view(*in_shape)[:1]


def log_relevance(logger: Any, stats: RelevanceStats, step: int) -> None:
    """Write the input heatmaps (overall, per class) and per-layer histograms to TensorBoard."""
    writer = getattr(logger, "experiment", None)
    if writer is None or not hasattr(writer, "add_image"):
        return
    if stats.input is not None and stats.input.dim() == 3:
        writer.add_image("relevance/input", heatmap(stats.input), step)
        writer.add_image("relevance/input_abs", heatmap(stats.input_abs), step)
        writer.add_image("relevance/input_per_class", class_grid(stats.per_class_input), step)
    for name, values in stats.channels.items():
        writer.add_histogram(f"relevance/{name}", values / max(stats.num_samples, 1), step)
    writer.flush()
