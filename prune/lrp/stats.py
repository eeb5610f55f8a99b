"""Dataset-level relevance statistics: sums over samples, ready to reduce across ranks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


def _per_unit(relevance: Tensor) -> Tensor:
    """Sum a layer's relevance over positions: ``(B, C, *spatial) -> (B, C)``."""
    return relevance.flatten(2).sum(2) if relevance.dim() > 2 else relevance


def unit_dim(module: nn.Module) -> int:
    """The axis of a module's output that holds its units: the last for a linear layer (its
    input may be ``(B, T, D)`` tokens), the channels (1) for everything else."""
    return -1 if isinstance(module, nn.Linear) else 1


def _unshared(tensors: list[Tensor | None]) -> set[int]:
    """Storage addresses that exactly one tensor of the list uses (safe to overwrite)."""
    counts: dict[int, int] = {}
    for t in tensors:
        if t is not None:
            p = t.untyped_storage().data_ptr()
            counts[p] = counts.get(p, 0) + 1
    return {p for p, n in counts.items() if n == 1}


@dataclass
class RelevanceStats:
    """Sums of relevance over a set of samples.

    Everything here is a *sum* (never a mean) so that statistics from several batches or
    several DDP ranks combine by addition; normalising is the criterion's job. Keys of the
    dictionaries are qualified module names from ``model.named_modules()``; the relevance of a
    key is the relevance at the *output* of that module. A conv layer's channel relevance is
    summed over positions before it is added; so is a linear layer's on token features
    ``(B, T, D)``, whose units lie on the last axis (``unit_dims``).

    ``num_samples`` is derived from the (reduced) ``class_counts``, so it always matches the
    sums it belongs to, whoever reduced them.

    Attributes:
        num_classes: number of classes K.
        input: signed input relevance, shaped like one sample.
        input_abs: absolute input relevance, shaped like one sample.
        per_class_input: signed input relevance per class ``(K, *sample)``.
        channels: sum of |R| per unit ``{name: (C,)}``.
        channels_signed: sum of signed R per unit ``{name: (C,)}``.
        channels_unit_abs: sum over samples of ``|R summed over the unit's positions|``
            ``{name: (C,)}``: the size of each unit's net relevance per sample (for a conv
            channel, positions of opposite sign cancel first, as in Taylor's ``|sum a*g|``; for
            a neuron the same as ``channels``).
        per_class_channels: sum of |R| per class and unit ``{name: (K, C)}``.
        class_counts: samples seen per class ``(K,)``.
        unit_dims: the axis of each layer's relevance that holds its units ``{name: axis}``;
            axis 1 (channels) for a layer not named (see :func:`unit_dim`).
    """

    num_classes: int
    input: Tensor | None = None
    input_abs: Tensor | None = None
    per_class_input: Tensor | None = None
    channels: dict[str, Tensor] = field(default_factory=dict)
    channels_signed: dict[str, Tensor] = field(default_factory=dict)
    channels_unit_abs: dict[str, Tensor] = field(default_factory=dict)
    per_class_channels: dict[str, Tensor] = field(default_factory=dict)
    class_counts: Tensor | None = None
    unit_dims: dict[str, int] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        """Number of samples summed (from the class counts)."""
        return 0 if self.class_counts is None else int(self.class_counts.sum().item())

    def update(
        self,
        input_relevance: Tensor | None,
        unit_relevance: Mapping[str, Tensor],
        labels: Tensor,
        consume: bool = False,
    ) -> None:
        """Add one batch; stays on the tensors' device, no host transfer.

        Args:
            input_relevance: ``(B, *sample)`` relevance at the input, or None to skip it.
            unit_relevance: ``{name: (B, C, ...)}`` relevance at the output of each module.
            labels: ``(B,)`` class index each sample is counted under (true or predicted).
            consume: the relevance tensors are not needed afterwards and may be overwritten
                (``|R|`` is then taken in place: on CPU a fresh batch-sized tensor costs more
                than the pass over it).
        """
        labels = labels.long()
        ref = input_relevance
        if ref is None:
            ref = next(iter(unit_relevance.values()))
        if self.class_counts is None:
            self.class_counts = torch.zeros(
                self.num_classes, dtype=torch.float64, device=ref.device
            )
        # Per-class sums as one (K, B) @ (B, D) product: a BLAS call, where index_add_ over B
        # rows runs serially on CPU (far slower at large B). The plain sums over the batch are
        # the per-class sums summed over classes, so they cost nothing more. Batch sums are
        # taken in the relevance's dtype and accumulated in float64.
        onehot = torch.nn.functional.one_hot(labels, self.num_classes).T  # (K, B)
        self.class_counts += onehot.sum(1)
        onehot = onehot.to(ref.dtype)
        owned = _unshared([input_relevance, *unit_relevance.values()]) if consume else set()

        def absolute(r: Tensor) -> Tensor:
            return r.abs_() if r.untyped_storage().data_ptr() in owned else r.abs()

        if input_relevance is not None:
            r = input_relevance.detach()
            if self.input is None:
                shape = r.shape[1:]
                self.input = r.new_zeros(shape, dtype=torch.float64)
                self.input_abs = r.new_zeros(shape, dtype=torch.float64)
                self.per_class_input = r.new_zeros((self.num_classes, *shape), dtype=torch.float64)
            per_class = (onehot @ r.flatten(1)).view(self.per_class_input.shape)
            self.per_class_input += per_class
            self.input += per_class.sum(0)
            self.input_abs += absolute(r).sum(0)
        for name, rel in unit_relevance.items():
            r = rel.detach()
            dim = self.unit_dims.get(name, 1) % max(r.dim(), 1)
            if dim != 1 and r.dim() > 2:
                r = r.movedim(dim, 1)  # (B, T, D) tokens -> (B, D, T)
            net = _per_unit(r)  # (B, C), positions summed in the relevance's dtype
            signed = net.sum(0)
            if r.dim() == 2:
                per_class_abs = onehot @ absolute(r)  # (K, C)
                total_abs = unit_abs = per_class_abs.sum(0)  # a neuron has one position
            else:  # |R| summed over positions without an |R| copy of the whole map
                per_class_abs = onehot @ torch.linalg.vector_norm(r.flatten(2), ord=1, dim=2)
                total_abs = per_class_abs.sum(0)
                unit_abs = net.abs_().sum(0)  # net is a fresh (B, C) tensor here
            if name not in self.channels:
                c = signed.shape[0]
                self.channels[name] = signed.new_zeros(c, dtype=torch.float64)
                self.channels_signed[name] = signed.new_zeros(c, dtype=torch.float64)
                self.channels_unit_abs[name] = signed.new_zeros(c, dtype=torch.float64)
                self.per_class_channels[name] = signed.new_zeros(
                    self.num_classes, c, dtype=torch.float64
                )
            self.per_class_channels[name] += per_class_abs
            self.channels[name] += total_abs
            self.channels_signed[name] += signed
            self.channels_unit_abs[name] += unit_abs

    def apply(self, fn: Callable[[Tensor], Tensor]) -> RelevanceStats:
        """Return new stats with ``fn`` applied to every tensor (reduce, move, cast)."""

        def each(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: fn(v) for k, v in d.items()}

        def one(t: Tensor | None) -> Tensor | None:
            return None if t is None else fn(t)

        return RelevanceStats(
            num_classes=self.num_classes,
            input=one(self.input),
            input_abs=one(self.input_abs),
            per_class_input=one(self.per_class_input),
            channels=each(self.channels),
            channels_signed=each(self.channels_signed),
            channels_unit_abs=each(self.channels_unit_abs),
            per_class_channels=each(self.per_class_channels),
            class_counts=one(self.class_counts),
            unit_dims=dict(self.unit_dims),
        )

    def cpu(self) -> RelevanceStats:
        """Float64 copy on the CPU."""
        return self.apply(lambda t: t.detach().to("cpu", torch.float64))

    def layer_names(self) -> list[str]:
        """Names of the modules whose unit relevance is recorded."""
        return list(self.channels)
