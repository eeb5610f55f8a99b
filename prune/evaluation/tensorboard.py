"""Pictures of dataset-level relevance for TensorBoard: heatmaps with a colour key, labelled
per-class tiles, kept-pixel masks, and histograms of input and unit relevance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from prune.lrp import RelevanceStats

#: a diverging map: red for relevance for the class, blue against it, white for none
CMAP = "bwr"


def _plane(relevance: Tensor) -> Tensor:
    """``(C, H, W)`` or ``(H, W)`` relevance as one ``(H, W)`` plane (channels summed)."""
    r = relevance.detach().float().cpu()
    return r.sum(0) if r.dim() == 3 else r


def heatmap_figure(relevance: Tensor, title: str) -> Any:
    """One heatmap, colour scale symmetric around zero, with a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = _plane(relevance)
    limit = float(r.abs().max().clamp_min(1e-12))
    fig, ax = plt.subplots(figsize=(4, 3.4))
    image = ax.imshow(r.numpy(), cmap=CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="relevance per sample")
    fig.tight_layout()
    return fig


def class_figure(per_class: Tensor, counts: Tensor, columns: int = 5) -> Any:
    """Per-class heatmaps ``(K, C, H, W)`` labelled with their class and sample count, on one
    colour scale (so classes compare), with one colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(per_class)
    means = [_plane(r) / max(int(n), 1) for r, n in zip(per_class, counts, strict=True)]
    limit = max(float(m.abs().max()) for m in means) or 1e-12
    rows = (k + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns + 1, 2.2 * rows), squeeze=False)
    image = None
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            image = ax.imshow(
                means[i].numpy(), cmap=CMAP, vmin=-limit, vmax=limit, interpolation="nearest"
            )
            ax.set_title(f"class {i}\nn={int(counts[i])}", fontsize=11)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, label="relevance per sample")
    return fig


def keep_mask(input_keep: Sequence[int], in_shape: Sequence[int], scale: int = 8) -> Tensor:
    """White where a pixel is kept, black where it is pruned: ``(1, H * scale, W * scale)``,
    each pixel a ``scale`` x ``scale`` block so the browser shows it sharp."""
    mask = torch.zeros(int(torch.tensor(in_shape).prod()))
    mask[torch.as_tensor(list(input_keep), dtype=torch.long)] = 1.0
    plane = mask.view(*in_shape)[:1]
    return plane.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def log_relevance(logger: Any, stats: RelevanceStats, step: int) -> None:
    """Write the input heatmaps (signed, absolute, per class) and histograms of input and
    per-layer unit relevance (per sample) to TensorBoard."""
    writer = getattr(logger, "experiment", None)
    if writer is None or not hasattr(writer, "add_figure"):
        return
    n = max(stats.num_samples, 1)
    if stats.input is not None and stats.input.dim() == 3:
        writer.add_figure(
            "relevance/input", heatmap_figure(stats.input / n, "input relevance"), step
        )
        writer.add_figure(
            "relevance/input_abs", heatmap_figure(stats.input_abs / n, "|input relevance|"), step
        )
        writer.add_figure(
            "relevance/input_per_class",
            class_figure(stats.per_class_input, stats.class_counts),
            step,
        )
    if stats.input is not None:
        # a tag of its own: TensorBoard shows one of an image and a histogram sharing a tag
        writer.add_histogram("relevance/input_histogram", stats.input.flatten() / n, step)
    for name, values in stats.channels.items():
        writer.add_histogram(f"relevance/{name}", values / n, step)
    writer.flush()
