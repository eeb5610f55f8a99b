"""Forward and backward passes over batches that collect per-unit activation terms."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.pruning.criteria.base import Batches


def per_unit(t: Tensor) -> Tensor:
    """Mean over positions: ``(B, C, *spatial) -> (B, C)`` (no-op for ``(B, C)``)."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def _recorder(store: dict[str, Tensor], name: str) -> Callable[..., None]:
    def hook(_module: nn.Module, _args: object, out: Tensor) -> None:
        store[name] = out

    return hook


def accumulate_units(
    model: nn.Module,
    names: Sequence[str],
    batches: Batches,
    term: Callable[[Tensor, Tensor], Tensor],
) -> dict[str, Tensor]:
    """Mean over samples of ``term(activation, gradient) -> (B, C)`` for each named module.

    The gradient is that of the summed cross-entropy loss with respect to the module's output,
    taken with ``torch.autograd.grad`` so that no parameter's ``.grad`` is touched. The model
    runs in eval mode (BatchNorm with running statistics); its mode is restored.
    """
    modules = {n: model.get_submodule(n) for n in names}
    totals: dict[str, Tensor] = {}
    count = 0
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for x, y in batches:
                outputs: dict[str, Tensor] = {}
                handles = [
                    m.register_forward_hook(_recorder(outputs, n)) for n, m in modules.items()
                ]
                try:
                    logits = model(x.detach().requires_grad_(x.is_floating_point()))
                finally:
                    for h in handles:
                        h.remove()
                loss = F.cross_entropy(logits, y, reduction="sum")
                grads = torch.autograd.grad(loss, [outputs[n] for n in names])
                for n, g in zip(names, grads, strict=True):
                    t = term(outputs[n].detach(), g).to(torch.float64).sum(0)  # (C,)
                    totals[n] = totals[n] + t if n in totals else t
                count += x.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("batches were empty; criteria that need data need at least one batch")
    return {n: t / count for n, t in totals.items()}
