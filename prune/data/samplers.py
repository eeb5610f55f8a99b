"""Batch samplers: batches of indices sliced from one index tensor per epoch, and the evaluation
sampler under which every sample is evaluated exactly once across DDP ranks."""

from __future__ import annotations

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DistributedSampler, Sampler


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


class EvalBatchSampler(IndexBatchSampler):
    """An :class:`IndexBatchSampler` for validation, test and relevance passes.

    Under DDP Lightning puts a ``DistributedSampler`` into every loader, and that sampler pads
    the shards to one length by repeating the first samples: with 500 test images on 3 ranks,
    501 are evaluated, and the relevance sums count some images twice. Lightning checks only
    ``DataLoader.sampler`` for a distributed sampler of the user's own, and a loader built with
    a ``batch_sampler`` always has a plain one there, so it cannot be kept from injecting. It
    rebuilds the batch sampler as ``type(batch_sampler)(sampler, batch_size=..., drop_last=...)``
    though, so this class is where the injected sampler arrives: a padding
    ``DistributedSampler`` is swapped for an ``UnrepeatedDistributedSampler`` over the same
    dataset, ranks and order (the one Lightning itself uses for ``predict``). The shards then
    differ in length by at most one sample and may differ by one batch; evaluation allows that
    (torchmetrics and ``RelevanceAccumulator`` reduce once, at the end of the loop). Training
    keeps :class:`IndexBatchSampler` and the padded sampler: DDP needs the same number of steps
    on every rank.

    Outside Lightning (plain iteration over the loader, e.g. a gradient criterion's batches)
    the sampler is the sequential one and every rank sees the whole dataset.

    Args:
        sampler: the order of the indices; a padding ``DistributedSampler`` is made unrepeated.
        batch_size: indices per batch.
        drop_last: drop a last, smaller batch.

    Raises:
        ValueError: the dataset has fewer samples than there are ranks (but some): a rank would
            have no batch, which Lightning refuses on that rank alone.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool = False) -> None:
        # exactly the class Lightning injects for a sequential or random loader; a subclass (a
        # wrapper around another sampler, or an unrepeated one already) is kept as it is
        if type(sampler) is DistributedSampler and not sampler.drop_last:
            n, ranks = len(sampler.dataset), sampler.num_replicas
            if 0 < n < ranks:
                # raised on every rank alike: a lone failing rank would leave the others
                # waiting in a collective
                raise ValueError(
                    f"cannot evaluate {n} samples on {ranks} processes without repeating some: "
                    f"use at most {n} devices for this pass"
                )
            sampler = UnrepeatedDistributedSampler(
                sampler.dataset,
                num_replicas=ranks,
                rank=sampler.rank,
                shuffle=sampler.shuffle,
                seed=sampler.seed,
            )
        super().__init__(sampler, batch_size, drop_last)
