"""Figures of the explanation evaluation: perturbation curves and example heatmaps.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend),
so they can be saved as PNG or handed to TensorBoard's ``SummaryWriter.add_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

from prune.evaluation.masking import count, mask_top, pixel_relevance


def flip_curve_figure(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Mean pixel-flipping curves, MoRF and LeRF side by side, one line per method.

    Args:
        curves: method -> ``{"fractions": [...], "morf": [...], "lerf": [...]}``, as in
            ``evaluate_explanations(...)["curves"]``.
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, order, title in zip(
        axes, ("morf", "lerf"), ("most relevant first", "least relevant first"), strict=True
    ):
        colors = colormaps["tab20"].colors  # 20 distinct colours: one per method
        for i, (name, c) in enumerate(curves.items()):
            style = "--" if name == "random" else "-"
            ax.plot(c["fractions"], c[order], style, color=colors[i % 20], label=name)
        ax.set(title=title, xlabel="fraction of pixels removed")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probability of the predicted class")
    axes[1].legend(fontsize="small")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _image(x: Tensor) -> Tensor:
    """``(C, H, W)`` -> ``(H, W)`` or ``(H, W, 3)`` scaled to [0, 1] for imshow."""
    x = x.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min() + 1e-12)
    return x[0] if x.shape[0] == 1 else x[:3].permute(1, 2, 0)


def select_per_class(y: Tensor, per_class: int = 1) -> Tensor:
    """Indices of the first ``per_class`` samples of each class present in ``y``."""
    picks = [(y == c).nonzero().flatten()[:per_class] for c in torch.unique(y)]
    return torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)


def heatmap_figure(
    x: Tensor,
    attributions: Mapping[str, Tensor],
    fraction: float = 0.15,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Example explanations: one row per image.

    Columns: the original image; then for each method its relevance map (red positive,
    blue negative, symmetric scale per map) and the image with the ``fraction`` most
    relevant pixels removed (marked red) and the ``fraction`` least relevant removed
    (marked blue), the two images of the feature-removal experiment in one panel.

    Args:
        x: images ``(N, C, H, W)``, e.g. ``x[select_per_class(y)]``.
        attributions: method -> relevance ``(N, C, H, W)`` for the same images.
        fraction: fraction of pixels marked as kept / removed.
        titles: one label per row (e.g. "label 3, pred 3").
    """
    n, m = x.shape[0], len(attributions)
    fig = Figure(figsize=(1.6 * (1 + 2 * m), 1.6 * n + 0.4), layout="constrained")
    axes = fig.subplots(n, 1 + 2 * m, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(_image(x[i]), cmap="gray")
        if titles is not None:
            axes[i, 0].set_ylabel(titles[i], fontsize="small")
        for j, (name, a) in enumerate(attributions.items()):
            r = pixel_relevance(a[i : i + 1])[0].view(x.shape[-2:]).float().cpu()
            lim = r.abs().max().item() or 1.0
            axes[i, 1 + 2 * j].imshow(r, cmap="bwr", vmin=-lim, vmax=lim)
            scores = pixel_relevance(a[i : i + 1])
            k = count(fraction, scores.shape[1])
            most = mask_top(scores, k, largest=True).view(x.shape[-2:]).cpu()
            least = mask_top(scores, k, largest=False).view(x.shape[-2:]).cpu()
            base = _image(x[i])
            rgb = base[..., None].expand(-1, -1, 3).clone() if base.dim() == 2 else base.clone()
            rgb[most] = torch.tensor([1.0, 0.0, 0.0])
            rgb[least] = torch.tensor([0.0, 0.3, 1.0])
            axes[i, 2 + 2 * j].imshow(rgb)
            if i == 0:
                axes[i, 1 + 2 * j].set_title(name, fontsize="small")
                axes[i, 2 + 2 * j].set_title(f"{fraction:.0%} most / least", fontsize="small")
    axes[0, 0].set_title("input", fontsize="small")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
