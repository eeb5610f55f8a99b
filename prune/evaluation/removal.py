"""Feature removal: classify images after removing their least or most relevant pixels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prune.evaluation.masking import apply_mask, count, mask_top, pixel_relevance


@dataclass
class RemovalOutcome:
    """Per-sample outcome of one removal experiment, for one attribution method.

    Boolean ``correct_*`` compare the prediction with the label; ``confidence_*`` are
    softmax probabilities of the *original* prediction. ``kept``: the least relevant
    pixels were removed (the important ones kept); ``removed``: the most relevant pixels
    were removed.
    """

    correct_original: Tensor
    correct_kept: Tensor
    correct_removed: Tensor
    confidence_original: Tensor
    confidence_kept: Tensor
    confidence_removed: Tensor

    @classmethod
    def cat(cls, parts: list[RemovalOutcome]) -> RemovalOutcome:
        """Concatenate the outcomes of several batches."""
        return cls(**{k: torch.cat([getattr(p, k) for p in parts]) for k in cls.__annotations__})

    def summary(self) -> dict[str, float]:
        """Accuracy and mean confidence of the original prediction, as plain floats."""
        out = {}
        for which in ("original", "kept", "removed"):
            out[f"removal/acc_{which}"] = getattr(self, f"correct_{which}").float().mean().item()
            out[f"removal/conf_{which}"] = getattr(self, f"confidence_{which}").mean().item()
        return out


@torch.no_grad()
def feature_removal(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attribution: Tensor,
    fill: Tensor,
    fraction: float = 0.15,
    logits: Tensor | None = None,
) -> RemovalOutcome:
    """Remove the ``fraction`` least and, separately, most relevant pixels, and classify.

    The feature-removal experiment of our seed paper (Collinsworth): a faithful
    explanation keeps accuracy and confidence when its least relevant pixels are
    removed, and loses them when its most relevant pixels are removed. Relevance is
    summed over channels per pixel and ranked by its signed value (positive = evidence
    for the explained class); ``round(fraction * H * W)`` pixels are replaced by ``fill``
    in every channel. Ties are broken by a fixed random permutation.

    Args:
        model: classifier in eval mode.
        x: images ``(B, *sample)``, normalised as the model expects.
        y: labels ``(B,)``.
        attribution: relevance ``(B, *sample)`` for the model's original prediction.
        fill: replacement values broadcastable to ``x`` (see ``masking.removal_fill``).
        fraction: fraction of pixels removed, in [0, 1].
        logits: the model's logits on ``x``, when already computed.

    Returns:
        Per-sample correctness and confidences for original, kept and removed images.
    """
    if logits is None:
        logits = model(x)
    pred = logits.argmax(1)
    scores = pixel_relevance(attribution)
    n = count(fraction, scores.shape[1])
    kept = apply_mask(x, mask_top(scores, n, largest=False), fill)  # important pixels kept
    removed = apply_mask(x, mask_top(scores, n, largest=True), fill)  # important pixels gone
    out = model(torch.cat([kept, removed])).view(2, *logits.shape)  # (2, B, K)
    prob = torch.cat([logits[None], out]).softmax(-1)  # (3, B, K)
    conf = prob.gather(2, pred.view(1, -1, 1).expand(3, -1, 1)).squeeze(2)  # (3, B)
    correct = torch.cat([logits[None], out]).argmax(-1) == y.view(1, -1)
    return RemovalOutcome(
        correct_original=correct[0],
        correct_kept=correct[1],
        correct_removed=correct[2],
        confidence_original=conf[0],
        confidence_kept=conf[1],
        confidence_removed=conf[2],
    )
