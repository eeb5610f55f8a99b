"""Tensor-backed LightningDataModule: uint8 tensors batched by indexing, normalised on device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler


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


class IndexBatchSampler(Sampler[Tensor]):
    """Batches of indices as slices of one index tensor per epoch.

    ``BatchSampler`` collects each batch from its sampler one Python int at a time, and the
    dataset then turns the list back into a tensor: for a small model that is a noticeable
    share of the step. This draws the sampler's whole order once per epoch and slices it. The
    signature is ``BatchSampler``'s, so Lightning can rebuild it around a ``DistributedSampler``.

    Args:
        sampler: the order of the indices (random, sequential, distributed, ...).
        batch_size: indices per batch.
        drop_last: drop a last, smaller batch.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool = False) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), bool(drop_last)

    def __iter__(self):
        order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def to_unit_range(x: Tensor) -> Tensor:
    """Raw images as float32 in [0, 1]: uint8 is divided by 255, float is taken as it is."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def keep_batch(batch: Any) -> Any:
    """Collate that keeps an already batched ``(x, y)`` pair (single samples are stacked)."""
    if isinstance(batch, tuple):
        return batch
    xs, ys = zip(*batch, strict=False)
    return torch.stack(xs), torch.stack(ys)


class TensorDataModule(L.LightningDataModule):
    """Base of every data source: subclasses implement ``load()``.

    ``load`` returns uint8 (or float) image tensors ``(N, C, H, W)`` and int64 labels for the
    training set and, when the source has one, the official test set. The validation split is
    taken from the training set with a seeded permutation. Batches stay uint8 until they reach
    the model's device, where ``ClassifierModule`` casts and normalises them with this
    datamodule's ``mean`` and ``std`` (which it keeps as buffers, so checkpoints carry them).

    Args:
        batch_size: training batch size (>= 1).
        eval_batch_size: batch size for validation, test and relevance passes (>= 1).
        val_size: number of training images held out for validation (>= 0), or a fraction in
            (0, 1).
        seed: seed of the train/validation split and of the relevance subset.
        mean: per-channel mean of the scaled [0, 1] images; None computes it on the train split.
        std: per-channel std; None computes it on the train split.
        relevance_set: which images the relevance pass explains: ``"train"`` (the training
            split) or ``"val"``.
        relevance_fraction: fraction of ``relevance_set`` used, in (0, 1].
        relevance_per_class: if set, exactly this many images per class (overrides the fraction).
        num_workers: DataLoader workers (0 is right for in-memory tensors).
    """

    source: str = "unknown"

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: float = 0.1,
        seed: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        relevance_set: str = "train",
        relevance_fraction: float = 1.0,
        relevance_per_class: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if int(value) < 1:
                raise ValueError(f"data.{key} must be an integer >= 1, got {value}")
        if val_size < 0:
            raise ValueError(f"data.val_size must be >= 0 (a count) or in (0, 1), got {val_size}")
        if relevance_set not in ("train", "val"):
            raise ValueError(f"data.relevance_set must be 'train' or 'val', got {relevance_set!r}")
        if not 0.0 < relevance_fraction <= 1.0:
            raise ValueError(f"data.relevance_fraction must be in (0, 1], got {relevance_fraction}")
        if relevance_per_class is not None and int(relevance_per_class) < 1:
            raise ValueError(
                f"data.relevance_per_class must be >= 1 or null, got {relevance_per_class}"
            )
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.val_size, self.seed = val_size, int(seed)
        self._mean, self._std = mean, std
        self.relevance_set, self.relevance_fraction = relevance_set, float(relevance_fraction)
        self.relevance_per_class = None if relevance_per_class is None else int(relevance_per_class)
        self.num_workers = int(num_workers)
        self.train_set: TensorBatchDataset | None = None
        self.val_set: TensorBatchDataset | None = None
        self.test_set: TensorBatchDataset | None = None

    # -- to implement --------------------------------------------------------------------------
    def load(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Return ``(x_train, y_train, x_test, y_test)``; the test pair may be None."""
        raise NotImplementedError

    # -- derived ------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load once, split train/val (seeded), hold out a test split if the source has none."""
        if self.train_set is not None:
            return
        x, y, x_test, y_test = self.load()
        gen = torch.Generator().manual_seed(self.seed)
        if x_test is None:  # no official test set: hold out 1/6 (MNIST's 10k/60k ratio)
            perm = torch.randperm(len(y), generator=gen)
            n_test = max(1, len(y) // 6)
            x_test, y_test = x[perm[:n_test]], y[perm[:n_test]]
            x, y = x[perm[n_test:]], y[perm[n_test:]]
        n_val = round(self.val_size * len(y)) if 0 < self.val_size < 1 else int(self.val_size)
        if n_val >= len(y):
            raise ValueError(
                f"data.val_size={self.val_size} leaves no training images ({len(y)} available)"
            )
        perm = torch.randperm(len(y), generator=gen)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        self.train_set = TensorBatchDataset(x[train_idx], y[train_idx])
        self.val_set = TensorBatchDataset(x[val_idx], y[val_idx])
        self.test_set = TensorBatchDataset(x_test, y_test)
        self.num_classes = int(max(y.max(), y_test.max()).item()) + 1
        self.in_shape = tuple(x.shape[1:])
        if self._mean is None or self._std is None:  # estimate on (up to) 20k training images
            scaled = to_unit_range(self.train_set.x[:20000])
            dims = [0, 2, 3] if scaled.dim() == 4 else [0]
        mean = scaled.mean(dims) if self._mean is None else torch.tensor(list(self._mean))
        std = scaled.std(dims) if self._std is None else torch.tensor(list(self._std))
        if (std <= 0).any():
            raise ValueError(f"data.std must be > 0 per channel, got {std.tolist()}")
        self.mean = mean.float().view(-1, 1, 1)
        self.std = std.float().view(-1, 1, 1)

    def _loader(self, dataset: TensorBatchDataset, shuffle: bool, batch_size: int) -> DataLoader:
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        return DataLoader(
            dataset,
            batch_sampler=IndexBatchSampler(sampler, batch_size),
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, self.eval_batch_size)

    def relevance_indices(self) -> Tensor:
        """Indices into the relevance set (seeded; per class or a fraction)."""
        ds = self.train_set if self.relevance_set == "train" else self.val_set
        gen = torch.Generator().manual_seed(self.seed + 1)
        if self.relevance_per_class is not None:
            chosen = []
            for k in range(self.num_classes):
                idx = (ds.y == k).nonzero().flatten()
                if len(idx) < self.relevance_per_class:
                    raise ValueError(
                        f"data.relevance_per_class={self.relevance_per_class} but class {k} has "
                        f"only {len(idx)} images in the {self.relevance_set} split"
                    )
                chosen.append(
                    idx[torch.randperm(len(idx), generator=gen)[: self.relevance_per_class]]
                )
            return torch.cat(chosen).sort().values
        n = max(1, round(self.relevance_fraction * len(ds)))
        return torch.randperm(len(ds), generator=gen)[:n].sort().values

    def relevance_dataloader(self) -> DataLoader:
        """Loader over the relevance set, unshuffled."""
        ds = self.train_set if self.relevance_set == "train" else self.val_set
        idx = self.relevance_indices()
        return self._loader(TensorBatchDataset(ds.x[idx], ds.y[idx]), False, self.eval_batch_size)

    def describe(self) -> dict[str, Any]:
        """Facts for results.json."""
        return {
            "source": self.source,
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            "train": len(self.train_set),
            "val": len(self.val_set),
            "test": len(self.test_set),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }
