"""Evaluation batch sampler: under DDP every sample is evaluated exactly once across the ranks."""

from __future__ import annotations

from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DistributedSampler, Sampler

from prune.data.base import IndexBatchSampler


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
