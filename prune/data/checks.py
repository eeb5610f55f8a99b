"""Checks of raw images and labels, shared by every data source: one-line errors that name the
source, the array and what is wrong."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted integers as ``(first, last)`` runs: ``[0, 1, 2, 7]`` -> ``[(0, 2), (7, 7)]``."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _gaps(present: Sequence[int]) -> list[tuple[int, int]]:
    """The runs of ``0..max(present)`` missing from the sorted ``present``."""
    return [(a + 1, b - 1) for a, b in zip([-1, *present], present, strict=False) if b > a + 1]


def _show(runs: Sequence[tuple[int, int]], limit: int = 6) -> str:
    """Runs as text: ``[(0, 2), (7, 7), (9, 10)]`` -> ``"0..2, 7, 9, 10"``."""
    parts = [
        str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}..{b}" for a, b in runs[:limit]
    ]
    if len(runs) > limit:
        parts.append(f"... ({len(runs) - limit} more)")
    return ", ".join(parts)


def check_images(where: str, name: str, x: Tensor) -> None:
    """Refuse images that cannot train a model; a free pass for uint8, one pass for float.

    Args:
        where: how messages name the data source (``data.path='f.npz'``, ...).
        name: the array's name (``x``, ``x_test``).
        x: the images, ``(N, C, H, W)``.

    Raises:
        ValueError: for a dtype other than uint8 or float, another shape, no samples, an empty
            axis, or NaN/Inf values (counted, with the number of images that hold them).
    """
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(
            f"{where}: {name} must be uint8 (0..255) or float images in [0, 1], got dtype {x.dtype}"
        )
    if x.dim() != 4:
        raise ValueError(f"{where}: {name} must be images (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError(f"{where}: {name} holds 0 samples; it needs at least one image")
    if 0 in x.shape[1:]:
        raise ValueError(
            f"{where}: {name} images have shape {tuple(x.shape[1:])}; C, H and W must be >= 1"
        )
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = ~torch.isfinite(x)
        values, images = int(bad.sum()), int(bad.flatten(1).any(1).sum())
        raise ValueError(
            f"{where}: {name} holds {_plural(values, 'NaN/Inf value')} in "
            f"{_plural(images, 'image')}; replace or drop them"
        )


def check_labels(where: str, name: str, y: Tensor, n: int, images: str) -> None:
    """Refuse labels that are not one non-negative integer per image.

    Args:
        where: how messages name the data source.
        name: the labels' name (``y``, ``y_test``).
        y: the labels.
        n: the number of images they label.
        images: the images' name (``x``, ``x_test``).

    Raises:
        ValueError: naming the array, the bad dtype, shape or length, or the count of negative
            labels.
    """
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise ValueError(
            f"{where}: {name} must hold integer labels 0..K-1, got dtype {y.dtype}; "
            "store them as integers"
        )
    if y.dim() != 1:
        raise ValueError(
            f"{where}: {name} must be 1-d labels of shape ({n},), got shape {tuple(y.shape)}; "
            "flatten it (one-hot labels: take argmax(1))"
        )
    if len(y) != n:
        raise ValueError(
            f"{where}: {name} holds {len(y)} labels but {images} holds {n} images; "
            "need one label per image"
        )
    negative = int((y < 0).sum())
    if negative:
        raise ValueError(
            f"{where}: {name} holds {_plural(negative, 'negative label')} (min {int(y.min())}); "
            "labels must be 0..K-1"
        )
