"""Per-pass state of the LRP engine: what the rules may ask while the explained forward runs."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn


def _live(table: dict[int, tuple[weakref.ref, Any]], t: Tensor) -> Any:
    """The value stored for ``t`` in an id-keyed table, or None when there is none or the id now
    belongs to another tensor (ids of freed tensors are reused)."""
    entry = table.get(id(t))
    return entry[1] if entry is not None and entry[0]() is t else None


class TensorSet:
    """Tensors by identity, without keeping them alive (ids of freed tensors are reused, so a
    bare id could name a tensor created later)."""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref] = {}

    def add(self, t: Tensor) -> None:
        self._refs[id(t)] = weakref.ref(t)

    def __contains__(self, t: Tensor) -> bool:
        ref = self._refs.get(id(t))
        return ref is not None and ref() is t

    def discard(self, t: Tensor) -> None:
        if t in self:
            del self._refs[id(t)]

    def __bool__(self) -> bool:
        return bool(self._refs)


class RunState:
    """What a rule may ask the engine during one forward pass.

    Attributes:
        roots: the tensors that alias the model input (the input and its reshapes).
        root_rule_used: a rule that returns relevance (not gradient) consumed the input.
        params: parameter overrides set by canonizers ``{module: (weight, bias)}``.
        passes: backward passes that will run through the graph; state saved for the backward
            is freed by the last one.
        inside: depth of rule calls running (the functional mode lets their ops through).
        leaf_depth: depth of native layers running (max-pool & co.: their ops need no rule).
    """

    def __init__(self) -> None:
        self.roots = TensorSet()
        self.root_rule_used = False
        self.root_other_used = False
        self.params: dict[nn.Module, tuple[Tensor, Tensor | None]] = {}
        self.inside = 0
        self.leaf_depth = 0
        self.pending: dict[int, tuple[weakref.ref, float]] = {}
        self.deferred: dict[int, tuple[weakref.ref, list[Callable[..., None]]]] = {}
        self.passes = 1  # backward passes through this graph (absLRP's contrastive pair: 2)
        #: pending tensors already materialised, by id: ``(weakref, the rescaled tensor)``
        self.materialized: dict[int, tuple[weakref.ref, Tensor]] = {}
        #: rescale nodes that read their tensor in the backward, by its storage (watch())
        self.watched: dict[int, list[Callable[[], None]]] = {}
        #: outputs of nodes that rescale their inputs' relevance themselves (absorbs())
        self.absorbing = TensorSet()
        #: tensors whose gradient may carry a per-sample factor (read())
        self.free_scale = TensorSet()
        #: recorded outputs: their gradient must be exact (keep_scale())
        self.kept = TensorSet()

    def absorbs(self, t: Tensor) -> None:
        """``t`` is the output of a node whose backward is linear in ``t``'s gradient and
        rescales the relevance of each of its inputs to unit L1 per sample, or leaves that to
        the node before, which does (absLRP): a factor per sample on ``t``'s gradient changes
        nothing upstream of the node."""
        self.absorbing.add(t)

    def read(
        self,
        t: Any,
        once: bool,
        source: Any = None,
        same: Callable[[Tensor, Tensor], bool] | None = None,
    ) -> None:
        """What a traced graph says of the value ``t`` (:mod:`prune.lrp.fast.reads`): whether
        one op alone reads it; for a reshape, ``source``, the value it reshapes, and ``same``,
        whether the two keep the samples on their first axis (else ``t`` is made by an op)."""
        if not self.absorbing or not isinstance(t, Tensor):  # no absLRP node yet, or no tensor
            return
        if same is not None and not (isinstance(source, Tensor) and same(source, t)):
            self.free_scale.discard(t)
            return
        absorbed = t in self.absorbing if same is None else self.scale_free(source)
        if once and absorbed and t not in self.kept:
            self.free_scale.add(t)
        else:
            self.free_scale.discard(t)  # (an op may return its input itself: x.contiguous())

    def scale_free(self, t: Tensor) -> bool:
        """Whether the one op that reads ``t`` may pass back its gradient with any factor per
        sample: ``t`` comes from a node that :meth:`absorbs` it, directly or through reshapes,
        each read once, and is not recorded. An absLRP node then skips the unit-L1 rescale of
        that input."""
        return t in self.free_scale and t not in self.kept

    def keep_scale(self, t: Tensor) -> None:
        """``t``'s relevance is recorded: its gradient must arrive exact."""
        self.kept.add(t)

    def mark_pending(self, t: Tensor, epsilon: float) -> None:
        """``t`` is a native output that still owes the rescale ``z / stab(z)`` (see flow.py)."""
        self.pending[id(t)] = (weakref.ref(t), epsilon)

    def watch(self, t: Tensor, fix: Callable[[], None]) -> None:
        """A rescale node reads ``t`` in the backward pass: :meth:`changing` calls ``fix`` before
        ``t``'s storage changes in place, and the node keeps what it needs of ``t`` then."""
        self.watched.setdefault(t.untyped_storage().data_ptr(), []).append(fix)

    def changing(self, t: Tensor) -> None:
        """``t`` (or a view of its storage) is about to change in place."""
        if self.watched:
            for fix in self.watched.pop(t.untyped_storage().data_ptr(), ()):
                fix()

    def materialized_of(self, t: Tensor) -> Tensor | None:
        """The rescaled tensor of the pending ``t``, if a consumer has materialised it."""
        return _live(self.materialized, t)

    def keep_materialized(self, t: Tensor, z: Tensor) -> None:
        """``z`` is the pending ``t`` with its rescale applied: the next consumer takes it."""
        self.materialized[id(t)] = (weakref.ref(t), z)

    def defer_record(self, t: Tensor, attach: Callable[..., None]) -> None:
        """Record the relevance of the pending ``t`` at its consumers: each one that applies the
        owed rescale (a fused ReLU, a materialisation) calls ``attach(share)`` with its own
        relevance-form output, whose relevance is the share of ``t``'s relevance it carries."""
        attaches = _live(self.deferred, t)
        if attaches is None:
            attaches = []
            self.deferred[id(t)] = (weakref.ref(t), attaches)
        attaches.append(attach)

    def consumed(
        self, t: Tensor, share: Tensor, value: Tensor | None = None, alias: Tensor | None = None
    ) -> None:
        """A consumer of the pending ``t`` produced ``share`` (see :meth:`defer_record`).

        ``value``: a copy of ``share``'s values, when ``share`` is about to change in place;
        ``alias``: the tensor ``share`` is a view of (an in-place change of it changes ``share``).
        """
        for attach in _live(self.deferred, t) or ():
            attach(share, value, alias)

    def is_deferred(self, t: Tensor) -> bool:
        """Whether a recorded output waits for its consumers (see :meth:`defer_record`)."""
        return _live(self.deferred, t) is not None

    def pending_epsilon(self, t: Tensor) -> float | None:
        """The epsilon of the rescale ``t`` owes, or ``None``."""
        return _live(self.pending, t)

    def is_root(self, x: Tensor) -> bool:
        """Whether ``x`` is (an alias of) the model input."""
        return x in self.roots

    def weight_bias(self, module: nn.Module) -> tuple[Tensor, Tensor | None]:
        """The layer's effective weight and bias (after canonizers), detached."""
        if module in self.params:
            return self.params[module]
        bias = getattr(module, "bias", None)
        return module.weight.detach(), None if bias is None else bias.detach()
