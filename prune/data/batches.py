"""A dataset of tensors fetched a whole batch at a time, and the collate that keeps its batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


class TensorBatchDataset(Dataset):
    """Images ``(N, C, H, W)`` and labels ``(N,)`` fetched a whole batch at a time.

    ``__getitems__`` lets the DataLoader fetch a batch with one indexing operation instead of
    N calls and a collate; Lightning's DistributedSampler injection still works because the
    loader is a plain ``DataLoader``.
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"images and labels differ in length: {len(x)} vs {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.y[idx]


def keep_batch(batch: Any) -> Any:
    """Collate that keeps an already batched ``(x, y)`` pair (single samples are stacked)."""
    if isinstance(batch, tuple):
        return batch
    xs, ys = zip(*batch, strict=False)
    return torch.stack(xs), torch.stack(ys)
