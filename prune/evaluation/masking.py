"""Pixel masking shared by the removal metrics: rank pixels by relevance, replace them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: removal values understood by :func:`removal_fill` besides a number
REMOVALS = ("zero", "mean", "blur")


def pixel_relevance(attribution: Tensor) -> Tensor:
    """One score per pixel: relevance summed over channels.

    ``(B, C, H, W) -> (B, H*W)``; any other shape ``(B, *sample) -> (B, prod(sample))``
    (every element is its own "pixel").
    """
    if attribution.dim() == 4:
        return attribution.sum(1).flatten(1)
    return attribution.flatten(1)


def num_pixels(x: Tensor) -> int:
    """Number of maskable pixels per sample of ``x`` (see :func:`pixel_relevance`)."""
    return math.prod(x.shape[2:]) if x.dim() == 4 else math.prod(x.shape[1:])


def count(fraction: float, total: int) -> int:
    """Number of pixels in ``fraction`` of ``total``, rounded to nearest."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return round(fraction * total)


def relevance_order(scores: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Pixel indices from most to least relevant, ``(B, P)``.

    Ties are broken by a fixed random permutation of pixel positions (drawn from
    ``generator``, or seed 0), so equal scores, e.g. the zeros of a sparse LRP map, do
    not systematically remove the top-left corner first.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    perm = torch.randperm(scores.shape[1], generator=generator).to(scores.device)
    order = scores[:, perm].sort(dim=1, descending=True, stable=True).indices
    return perm[order]


def ranks(order: Tensor) -> Tensor:
    """Invert an order: ``ranks[b, p]`` is the position of pixel ``p`` in ``order[b]``."""
    out = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return out.scatter_(1, order, positions)


def mask_top(
    scores: Tensor, n: int, largest: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Boolean mask ``(B, P)`` of the ``n`` highest (or lowest) scoring pixels per sample."""
    rank = ranks(relevance_order(scores, generator))
    return rank < n if largest else rank >= scores.shape[1] - n


def expand_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Pixel mask ``(..., P)`` -> broadcastable to ``x``: ``(..., 1, H, W)`` for images."""
    if x.dim() == 4:
        return mask.view(*mask.shape[:-1], 1, *x.shape[2:])
    return mask.view(*mask.shape[:-1], *x.shape[1:])


def apply_mask(x: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """Replace the pixels where ``mask`` (``(..., B, P)``) is true by ``fill``.

    ``fill`` broadcasts against ``x`` (``(B, *sample)`` or per channel ``(C, 1, 1)``);
    leading mask dimensions (e.g. flip steps) broadcast in front of ``x``.
    """
    return torch.where(expand_mask(mask, x), fill, x)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Per-channel Gaussian blur of images ``(B, C, H, W)``, reflect padding."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def channel_values(value: float | Sequence[float] | Tensor, x: Tensor) -> Tensor:
    """A scalar or per-channel value as a tensor that broadcasts against ``x``."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if v.dim() == 0 or x.dim() != 4:
        return v
    return v.view(-1, 1, 1)


def removal_fill(
    x: Tensor,
    removal: str | float = "zero",
    background: float | Sequence[float] | Tensor = 0.0,
    mean: float | Sequence[float] | Tensor | None = None,
    blur_sigma: float | None = None,
) -> Tensor:
    """Values that replace removed pixels, broadcastable to ``x``.

    Args:
        x: inputs ``(B, *sample)`` in the model's (normalised) space.
        removal: ``"zero"``: a black pixel, i.e. ``background``; ``"mean"``: the dataset
            mean per channel (``mean``, or the mean of ``x`` when ``None``); ``"blur"``: a
            Gaussian blur of each image; a number: that constant in normalised space.
        background: normalised value of a black pixel, ``(0 - mu) / sigma`` per channel
            (for MNIST with mu=0.1307, sigma=0.3081: -0.4242).
        mean: dataset mean per channel in normalised space (about 0 for z-scored data).
        blur_sigma: blur width in pixels; default ``max(H, W) / 14`` (2 for MNIST).

    Raises:
        ValueError: for an unknown removal; the message lists the allowed ones.
    """
    if isinstance(removal, int | float):
        return channel_values(float(removal), x)
    if removal == "zero":
        return channel_values(background, x)
    if removal == "mean":
        if mean is None:
            mean = x.transpose(0, 1).flatten(1).mean(1) if x.dim() == 4 else x.mean()
        return channel_values(mean, x)
    if removal == "blur":
        if x.dim() != 4:
            raise ValueError(
                f"removal='blur' needs images (B, C, H, W), got shape {tuple(x.shape)}"
            )
        sigma = blur_sigma if blur_sigma is not None else max(x.shape[-2:]) / 14
        return gaussian_blur(x, sigma)
    raise ValueError(f"unknown removal {removal!r}; choose from {list(REMOVALS)} or a number")
