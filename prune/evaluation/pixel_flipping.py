"""Pixel flipping: the model's output as relevant pixels are removed step by step, and AOPC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prune.evaluation.masking import apply_mask, pixel_relevance, ranks, relevance_order

ORDERS = ("morf", "lerf")


def flip_fractions(steps: int | Sequence[float]) -> list[float]:
    """Fractions of pixels removed at each step, starting at 0.

    Args:
        steps: a number of equal steps from 0 to 1 (``10`` -> 0, 0.1, ..., 1), or explicit
            fractions in [0, 1] (0 is prepended when missing).
    """
    if isinstance(steps, int):
        if steps < 1:
            raise ValueError(f"flip steps must be >= 1, got {steps}")
        return [k / steps for k in range(steps + 1)]
    fractions = sorted({float(f) for f in steps} | {0.0})
    if fractions[0] < 0 or fractions[-1] > 1:
        raise ValueError(f"flip fractions must lie in [0, 1], got {list(steps)}")
    return fractions


@torch.no_grad()
def flip_curve(
    model: nn.Module,
    x: Tensor,
    attribution: Tensor,
    target: Tensor,
    fractions: Sequence[float],
    fill: Tensor,
    order: str = "morf",
    output: str = "probability",
    batch_size: int | None = None,
    logits: Tensor | None = None,
) -> Tensor:
    """Model output for ``target`` after removing growing fractions of pixels.

    Pixel flipping (Bach et al. 2015; Samek et al. 2017, "region perturbation" with
    1-pixel regions): pixels are ranked once by their signed relevance (summed over
    channels), then the first ``round(f * H * W)`` of the ranking are replaced by
    ``fill`` for every fraction ``f``. ``"morf"`` removes the most relevant first,
    ``"lerf"`` the least relevant first. All steps of a batch run as one stacked batch.

    Args:
        model: classifier in eval mode.
        x: inputs ``(B, *sample)``.
        attribution: relevance ``(B, *sample)`` for ``target``.
        target: class whose output is tracked, ``(B,)``.
        fractions: fractions removed, e.g. from :func:`flip_fractions`.
        fill: replacement values broadcastable to ``x``.
        order: ``"morf"`` or ``"lerf"``.
        output: ``"probability"`` (softmax of the target) or ``"logit"``.
        batch_size: the most perturbed images per forward pass (default: all).
        logits: the model's logits on ``x``, reused for steps that remove nothing.

    Returns:
        ``(B, len(fractions))`` outputs; column 0 is the unperturbed input when
        ``fractions[0] == 0``.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown flip order {order!r}; choose from {list(ORDERS)}")
    if output not in ("probability", "logit"):
        raise ValueError(f"unknown flip output {output!r}; choose 'probability' or 'logit'")
    scores = pixel_relevance(attribution)
    if order == "lerf":
        scores = -scores
    rank = ranks(relevance_order(scores))  # (B, P)
    total = scores.shape[1]
    counts = torch.tensor([round(f * total) for f in fractions], device=x.device)
    # steps that remove nothing reuse the given logits instead of a forward pass
    run = counts > 0 if logits is not None else torch.ones_like(counts, dtype=torch.bool)
    masks = rank[None] < counts[run].view(-1, 1, 1)  # (S', B, P)
    perturbed = apply_mask(x, masks, fill).flatten(0, 1)  # (S'*B, *sample)
    chunk = batch_size or max(1, perturbed.shape[0])
    out = torch.cat([model(part) for part in perturbed.split(chunk)])
    values = x.new_empty(len(fractions), x.shape[0], out.shape[-1])  # (S, B, K)
    values[run] = out.view(-1, x.shape[0], out.shape[-1]).to(values.dtype)
    if logits is not None:
        values[~run] = logits.to(values.dtype)
    if output == "probability":
        values = values.softmax(-1)
    return values.gather(2, target.view(1, -1, 1).expand(len(fractions), -1, 1)).squeeze(2).T


def aopc(curve: Tensor) -> Tensor:
    """Area over the perturbation curve per sample (Samek et al. 2017, eq. 12).

    ``AOPC = 1/(L+1) * sum_{k=0..L} (f(x^0) - f(x^k))`` for a curve ``(B, L+1)`` whose
    column 0 is the unperturbed input. Higher is better for most-relevant-first
    curves; for least-relevant-first curves lower is better.
    """
    return (curve[:, :1] - curve).mean(1)


@dataclass
class FlipCurves:
    """Most- and least-relevant-first curves ``(B, S)`` of one method, with fractions."""

    fractions: list[float]
    morf: Tensor
    lerf: Tensor

    @classmethod
    def cat(cls, parts: list[FlipCurves]) -> FlipCurves:
        """Concatenate the curves of several batches."""
        return cls(
            parts[0].fractions,
            torch.cat([p.morf for p in parts]),
            torch.cat([p.lerf for p in parts]),
        )

    def summary(self) -> dict[str, float]:
        """Mean AOPC of both orders and their difference (area between the curves)."""
        morf, lerf = aopc(self.morf).mean().item(), aopc(self.lerf).mean().item()
        return {"flip/aopc_morf": morf, "flip/aopc_lerf": lerf, "flip/abpc": morf - lerf}

    def mean_curves(self) -> dict[str, list[float]]:
        """Curves averaged over samples, JSON-ready."""
        return {
            "fractions": list(self.fractions),
            "morf": self.morf.mean(0).tolist(),
            "lerf": self.lerf.mean(0).tolist(),
        }
