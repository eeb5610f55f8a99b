"""Criterion: turns a model (and what it declares it needs) into scores; higher means keep."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from prune.checks import Check
from prune.pruning.groups import ChannelGroup

Batches = Iterable[Sequence[Tensor]]
"""An iterable of ``(x, y)`` batches on the model's device."""

NEEDS: dict[str, str] = {
    "stats": "relevance statistics (a prune.lrp.RelevanceStats)",
    "batches": "batches of (x, y) on the model's device",
}
"""What a criterion may declare in ``needs``; each is also the name of its scoring argument."""

METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "units": ("scores", ("model", "groups")),
    "inputs": ("input_scores", ("model", "example_input")),
    "heads": ("head_scores", ("model", "groups")),
    "neurons": ("neuron_scores", ("model", "groups")),
}
"""Per target: the scoring method and the arguments it takes before those in ``needs``."""


class Criterion:
    """Base of all pruning criteria.

    A criterion scores output units (``"units"`` in ``targets``: one score per output channel
    or neuron of each group's producers, by ``scores(model, groups, ...)``), input elements
    (``"inputs"``: one score per element of a sample, by
    ``input_scores(model, example_input, ...)``), the attention heads of transformer blocks
    (``"heads"``: one score per head of each attention module, by
    ``head_scores(model, groups, ...)``) and/or the hidden neurons of their MLPs
    (``"neurons"``: one per neuron of each MLP, by ``neuron_scores(model, groups, ...)``; see
    :mod:`prune.pruning.transformer`). It declares in ``needs`` what else it reads:
    ``"stats"`` (relevance statistics), ``"batches"`` (labelled data to run forward and backward
    passes on), or nothing; its scoring methods take exactly those as further arguments, by
    name, and the pruner passes nothing else. Scores are float64; higher means keep.

    A subclass whose ``targets``, ``needs`` and method signatures disagree is refused when it
    is defined, with a ``TypeError`` naming the class.
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    targets: ClassVar[frozenset[str]] = frozenset({"units"})

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if unknown := sorted(set(cls.needs) - NEEDS.keys()):
            raise TypeError(f"{cls.__name__}.needs holds {unknown}; allowed: {sorted(NEEDS)}")
        if unknown := sorted(set(cls.targets) - METHODS.keys()):
            raise TypeError(f"{cls.__name__}.targets holds {unknown}; allowed: {sorted(METHODS)}")
        for target, (method, fixed) in METHODS.items():
            implemented = getattr(cls, method) is not getattr(Criterion, method)
            if implemented != (target in cls.targets):
                raise TypeError(
                    f"{cls.__name__} {'implements' if implemented else 'does not implement'} "
                    f"{method} but targets {sorted(cls.targets)}"
                )
            params = tuple(inspect.signature(getattr(cls, method)).parameters)[1:]
            if implemented and (params[:2] != fixed or set(params[2:]) != cls.needs):
                raise TypeError(
                    f"{cls.__name__}.{method} takes {params}; with needs={sorted(cls.needs)} it "
                    f"must take {fixed} followed by {sorted(cls.needs)}"
                )

    def scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], **needs: object
    ) -> dict[str, Tensor]:
        """Scores ``{producer name: (width,)}`` for every producer of every group."""
        raise TypeError(
            f"{type(self).__name__} cannot score units; it scores {sorted(self.targets)}"
        )

    def head_scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], **needs: object
    ) -> dict[str, Tensor]:
        """Scores ``{attention module name: (heads,)}`` for every group of heads."""
        raise TypeError(
            f"{type(self).__name__} cannot score heads; it scores {sorted(self.targets)}"
        )

    def neuron_scores(
        self, model: nn.Module, groups: Sequence[ChannelGroup], **needs: object
    ) -> dict[str, Tensor]:
        """Scores ``{MLP name: (hidden,)}`` for every group of MLP neurons."""
        raise TypeError(
            f"{type(self).__name__} cannot score neurons; it scores {sorted(self.targets)}"
        )

    def input_scores(self, model: nn.Module, example_input: Tensor, **needs: object) -> Tensor:
        """Scores shaped like one dense input sample (``example_input.shape[1:]``)."""
        raise TypeError(
            f"{type(self).__name__} cannot score inputs; it scores {sorted(self.targets)}"
        )

    def needed(self, available: Mapping[str, object]) -> dict[str, object]:
        """The arguments this criterion declared in ``needs``, taken from ``available``.

        Raises:
            ValueError: naming each declared need that ``available`` lacks (or holds as None).
        """
        missing = [name for name in sorted(self.needs) if available.get(name) is None]
        if missing:
            what = "; ".join(f"{name}=... ({NEEDS[name]})" for name in missing)
            raise ValueError(f"{self!r} needs {what}")
        return {name: available[name] for name in self.needs}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def producers(groups: Sequence[ChannelGroup]) -> list[str]:
    """All producer names of ``groups``, in order."""
    return [p for g in groups for p in g.producers]


NORMS = ("l1", "l2", "none")


def layer_norm(value: bool | str | None) -> str:
    """Check a criterion's ``normalize`` argument: true/"l1", "l2", or false/"none"."""
    if value is True:
        return "l1"
    if value is False or value is None:
        return "none"
    if isinstance(value, str) and value.lower() in NORMS:
        return value.lower()
    raise ValueError(f"normalize={value!r} is not allowed; choose true (= 'l1'), 'l2' or false")


def _is_norm(value: object) -> bool:
    try:
        layer_norm(value)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


#: the allowed values of a criterion's ``normalize`` argument (its ``config_checks`` entry)
NORMALIZE_CHECK = Check("true (= 'l1'), 'l2' or false", _is_norm)


def normalize_layer(scores: Tensor, norm: str = "l1") -> Tensor:
    """Divide a layer's scores by their L1 (or L2) norm, so that layers of different size and
    scale rank together globally. L1 gives every layer the same total; L2 (Molchanov et al.
    2017) lets a layer's total grow with the square root of its width. ``"none"``: as is."""
    scores = scores.to(torch.float64)
    if norm == "none":
        return scores
    total = scores.abs().sum() if norm == "l1" else scores.pow(2).sum().sqrt()
    return scores / total.clamp_min(torch.finfo(torch.float64).tiny)


def unit_weight(module: nn.Module) -> Tensor:
    """Weights of a producer arranged ``(units, fan_in)``."""
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"expected a Conv2d or Linear producer, got {type(module).__name__}")
    return module.weight.detach().flatten(1)
