"""Remove and retrain (ROAR): drop pixels dataset-wide by relevance, retrain, compare."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from prune.evaluation.masking import apply_mask, pixel_relevance, relevance_order
from prune.evaluation.methods.base import AttributionMethod

#: ``train_fn(x_train, y_train, x_test, y_test) -> test accuracy``
TrainFn = Callable[[Tensor, Tensor, Tensor, Tensor], float]

REDUCTIONS = ("abs_mean", "mean")


def dataset_relevance(
    method: AttributionMethod,
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    batch_size: int = 256,
    reduce: str = "abs_mean",
) -> Tensor:
    """One relevance score per pixel for a whole dataset, ``(P,)``.

    Args:
        method: attribution method.
        model: classifier.
        x: images ``(N, *sample)``.
        target: explained class per image (default: the model's prediction).
        batch_size: images per attribution call.
        reduce: ``"abs_mean"`` (mean of |R|, the pruning-by-explaining statistic of
            Yeom et al. 2021) or ``"mean"`` (signed mean).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; choose from {list(REDUCTIONS)}")
    total = None
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        if target is None:
            with torch.no_grad():
                tb = model(xb).argmax(1)
        else:
            tb = target[i : i + batch_size]
        r = pixel_relevance(method(model, xb, tb))  # (b, P)
        r = r.abs() if reduce == "abs_mean" else r
        total = r.sum(0) if total is None else total + r.sum(0)
    return total / x.shape[0]


def variance_scores(x: Tensor) -> Tensor:
    """Pixel variance over the dataset, summed over channels ``(P,)``: a baseline score."""
    return pixel_relevance(x.var(0, keepdim=True))[0]


def random_scores(num_pixels: int, seed: int = 0) -> Tensor:
    """Uniform random pixel scores ``(P,)``: the chance baseline."""
    return torch.rand(num_pixels, generator=torch.Generator().manual_seed(seed))


def dataset_mask(scores: Tensor, k: int, remove: str = "least") -> Tensor:
    """Boolean mask ``(P,)`` of the ``k`` pixels to remove from every image.

    Args:
        scores: one score per pixel, higher = more relevant.
        k: number of pixels removed.
        remove: ``"least"`` (keep the important pixels) or ``"most"``.
    """
    if remove not in ("least", "most"):
        raise ValueError(f"remove must be 'least' or 'most', got {remove!r}")
    if not 0 <= k <= scores.numel():
        raise ValueError(f"k must be in [0, {scores.numel()}], got {k}")
    signed = scores if remove == "most" else -scores
    order = relevance_order(signed[None])[0]
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[order[:k]] = True
    return mask


def remove_pixels(x: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """Apply one dataset-wide pixel mask ``(P,)`` to all images ``(N, *sample)``."""
    return apply_mask(x, mask.to(x.device).expand(x.shape[0], -1), fill)


def remove_and_retrain(
    scores: Mapping[str, Tensor],
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    train_fn: TrainFn,
    ks: Sequence[int],
    fill: Tensor,
    remove: Sequence[str] = ("least", "most"),
    baselines: bool = True,
    seed: int = 0,
) -> dict[str, dict[str, dict[int, float]]]:
    """ROAR (Hooker et al. 2019), dataset-wide variant of our seed paper (Collinsworth).

    For every method's pixel scores, every ``k`` and every removal direction, the same
    ``k`` pixels are replaced by ``fill`` in all training and test images, a fresh model is
    trained by ``train_fn`` and its test accuracy recorded. Removing the least relevant
    pixels should keep accuracy (the pruned inputs are not needed); removing the most
    relevant should lose it faster than the random baseline. The random and pixel
    variance baselines are added when ``baselines`` (input pruning is always shown beside
    them).

    Args:
        scores: method name -> pixel scores ``(P,)`` (e.g. from :func:`dataset_relevance`).
        x_train: training images ``(N, *sample)``; y_train: labels.
        x_test: test images; y_test: labels.
        train_fn: trains a new model and returns its test accuracy.
        ks: numbers of pixels removed.
        fill: replacement values (see ``masking.removal_fill``; a per-image blur does not
            make sense here, use a constant or per-channel value).
        remove: directions, ``"least"`` and/or ``"most"``.
        baselines: add ``"random"`` and ``"variance"`` scores.
        seed: seed of the random baseline.

    Returns:
        ``{method: {"remove_least": {k: accuracy}, "remove_most": {...}}}``.
    """
    table = dict(scores)
    if baselines:
        total = (
            next(iter(scores.values())).numel() if scores else pixel_relevance(x_train[:1]).shape[1]
        )
        table.setdefault("random", random_scores(total, seed))
        table.setdefault("variance", variance_scores(x_train))
    results: dict[str, dict[str, dict[int, float]]] = {}
    trained: dict[tuple[int, ...], float] = {}  # identical masks (e.g. k = 0) train once
    for name, s in table.items():
        results[name] = {}
        for direction in remove:
            accs = {}
            for k in ks:
                mask = dataset_mask(s, int(k), direction)
                key = tuple(mask.nonzero().flatten().tolist())
                if key not in trained:
                    trained[key] = float(
                        train_fn(
                            remove_pixels(x_train, mask, fill),
                            y_train,
                            remove_pixels(x_test, mask, fill),
                            y_test,
                        )
                    )
                accs[int(k)] = trained[key]
            results[name][f"remove_{direction}"] = accs
    return results
