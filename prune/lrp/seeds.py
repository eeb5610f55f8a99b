"""Output relevance and the seeds of LRP's backward passes.

The output relevance says what is explained: a class's logit (class indices), any ``(B, K)``
relevance, or one computed from the logits (:func:`softmax_gradient`, :func:`logit_margin`,
:func:`log_probability`). A seed is that relevance in gradient form, times the rescale the
logits still owe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prune.lrp.composites import Composite
from prune.lrp.rules.base import divide_by_input, ratio


def softmax_gradient(logits: Tensor, labels: Tensor) -> Tensor:
    """Output relevance of softmax-gradient LRP (SGLRP; Iwana et al., ICCVW 2019).

    ``R_k = p_t (delta_kt - p_k)``, the gradient of the target's softmax probability ``p_t`` with
    respect to the logits: the target class gets ``p_t (1 - p_t)``, every other class the negative
    share ``-p_t p_k`` it takes from it. The map therefore contrasts the target with the classes
    the model confuses it with; the output relevance sums to zero per sample.

    Args:
        logits: ``(B, K)``.
        labels: ``(B,)`` target class indices.
    """
    z = logits.detach()
    p = (z.float() if z.dtype in (torch.float16, torch.bfloat16) else z).softmax(1)
    p_t = p.gather(1, labels.reshape(-1, 1).long())
    one_hot = torch.zeros_like(p).scatter_(1, labels.reshape(-1, 1).long(), 1.0)
    return (p_t * (one_hot - p)).to(logits.dtype)


def logit_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Output relevance that explains the margin ``z_t - z_r`` of the target over its strongest
    competitor ``r`` (the largest other logit).

    ``R_t = z_t``, ``R_r = -z_r``, zero elsewhere: relevance sums to the margin, which is what
    decides the classification (class evidence relative to the competitors, as in Montavon et al.
    2019, "Layer-wise relevance propagation: an overview", here against the strongest one).
    Units that tell the target apart from the class it is most confused with get positive
    relevance; units that both classes use cancel. With fewer than two classes there is no
    competitor and this is the target logit.

    Args:
        logits: ``(B, K)``.
        labels: ``(B,)`` target class indices.
    """
    z = logits.detach()
    labels = labels.reshape(-1, 1).long()
    one_hot = torch.zeros_like(z).scatter_(1, labels, 1.0)
    if z.shape[1] < 2:
        return one_hot * z
    rival = z.scatter(1, labels, float("-inf")).argmax(1, keepdim=True)
    return (one_hot - torch.zeros_like(z).scatter_(1, rival, 1.0)) * z


def log_probability(logits: Tensor, labels: Tensor) -> Tensor:
    """Output relevance that explains the target's log-probability ``log p_t``, linearised at the
    logits.

    ``R_k = z_k (delta_kt - p_k)``: the logits times the gradient of ``log p_t`` (the negative
    cross-entropy loss). The target keeps ``z_t (1 - p_t)``, each competitor gives back
    ``z_k p_k``; relevance sums to ``z_t - sum_k p_k z_k``. A sample the model is sure of
    (``p_t`` near 1) sends almost nothing; the samples near a decision boundary, which pruning
    flips first, send the most. With LRP-0 in every layer the unit relevance is the first-order
    Taylor term of the loss (Molchanov et al. 2017), signed.

    Args:
        logits: ``(B, K)``.
        labels: ``(B,)`` target class indices.
    """
    z = logits.detach()
    zf = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    one_hot = torch.zeros_like(zf).scatter_(1, labels.reshape(-1, 1).long(), 1.0)
    return (zf * (one_hot - zf.softmax(1))).to(logits.dtype)


#: Integer dtypes of class-index targets.
INDEX = (torch.int64, torch.int32, torch.int16, torch.uint8)


def _output_relevance(logits: Tensor, target: Tensor | Callable[[Tensor], Tensor] | None) -> Tensor:
    """Output relevance ``(N, K)``: the target logit for class indices, ``target(logits)`` for a
    callable, else ``target`` itself."""
    if callable(target) and not isinstance(target, Tensor):
        target = target(logits)
    if target is None:
        target = logits.argmax(1)
    if target.dtype in INDEX:
        one_hot = torch.zeros_like(logits).scatter_(1, target.reshape(-1, 1).long(), 1.0)
        return one_hot * logits
    if target.shape != logits.shape:
        raise ValueError(
            f"output relevance must have the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    return target.to(logits)


def gradient_seeds(
    composite: Composite, z: Tensor, target: Any, owed: float | None, passes: int
) -> tuple[list[tuple[float, Tensor]], Tensor]:
    """The seeds of the backward passes with their weights, and the explained output per sample.

    A seed is the output relevance in gradient form, times the rescale the logits still owe:
    ``R / stab(z)`` (``R / z`` where none is owed). Class indices (or none: the predicted
    class) under a one-map composite take a narrow path with the same values: the relevance
    sits on one logit per sample, so the seed is that column's ratio scattered into zeros and
    the explained output is that logit. On a small model the full-width path's extra
    operations are a visible share of a forward+backward.
    """
    one_map = passes == 1 and type(composite).seeds is Composite.seeds
    if one_map and (target is None or (isinstance(target, Tensor) and target.dtype in INDEX)):
        index = (z.argmax(1) if target is None else target).reshape(-1, 1).long()
        if index.shape[0] != z.shape[0]:
            raise ValueError(
                f"target has {index.shape[0]} class indices for a batch of {z.shape[0]}"
            )
        zt = z.gather(1, index)
        col = divide_by_input(zt, zt) if owed is None else ratio(zt, zt, owed)
        return [(1.0, torch.zeros_like(z).scatter_(1, index, col))], zt.reshape(-1)
    relevance = _output_relevance(z, target)
    seeds = composite.seeds(z, relevance)
    if len(seeds) != passes:
        raise RuntimeError(f"{composite!r} gave {len(seeds)} seeds but num_maps={passes}")
    stabilized = [
        (weight, divide_by_input(r, z) if owed is None else ratio(r, z, owed))
        for weight, r in seeds
    ]
    return stabilized, relevance.sum(1)
