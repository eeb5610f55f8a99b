"""PruningPlan: what was kept, relative to the dense architecture; the source of truth."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PLAN_VERSION = 1


def _indices(values: Sequence[int], what: str) -> list[int]:
    """Sorted list of distinct non-negative ints from ``values``, or raise naming ``what``."""
    out = [int(v) for v in values]
    if any(v < 0 for v in out) or len(set(out)) != len(out):
        raise ValueError(f"{what} must be distinct non-negative indices, got {out[:10]}...")
    return sorted(out)


def _compose(first: list[int], later: list[int], what: str) -> list[int]:
    """Map positions ``later`` (into the list ``first``) back to ``first``'s index space."""
    if later and later[-1] >= len(first):
        raise ValueError(
            f"{what}: later plan keeps position {later[-1]}, but only {len(first)} remain"
        )
    return [first[i] for i in later]


def _relative(full: list[int], earlier: list[int], what: str) -> list[int]:
    """Positions of ``full`` inside ``earlier`` (the inverse of :func:`_compose`)."""
    where = {v: i for i, v in enumerate(earlier)}
    missing = [v for v in full if v not in where]
    if missing:
        raise ValueError(
            f"{what}: indices {missing[:10]} were already removed; a plan cannot regrow"
        )
    return [where[v] for v in full]


@dataclass
class PruningPlan:
    """Kept output units per producer and kept input elements, relative to the dense model.

    Indices always refer to the *original dense* architecture, so a plan can be replayed on a
    freshly built model (``surgery.apply_plan``) before a pruned checkpoint's weights are loaded.
    A round computed on an already pruned model produces indices relative to that model; use
    :meth:`compose` to bring them back to dense indices.

    Attributes:
        keep: ``{producer name: sorted kept output-unit indices}`` (Conv2d out channels or
            Linear out features), names as in ``model.named_modules()``.
        input_keep: sorted kept flat indices into one dense input sample, or None when the
            inputs are not pruned.
        input_shape: shape of one dense input sample ``(C, H, W)``; set with ``input_keep``.
        dense_widths: ``{producer name: number of output units in the dense model}``; used for
            kept ratios and for the schedule of later rounds.
    """

    keep: dict[str, list[int]] = field(default_factory=dict)
    input_keep: list[int] | None = None
    input_shape: tuple[int, ...] | None = None
    dense_widths: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keep = {str(k): _indices(v, f"plan.keep[{k!r}]") for k, v in self.keep.items()}
        for name, kept in self.keep.items():
            if not kept:
                raise ValueError(f"plan.keep[{name!r}] is empty; every layer must keep a unit")
        if self.input_keep is not None:
            self.input_keep = _indices(self.input_keep, "plan.input_keep")
            if not self.input_keep:
                raise ValueError("plan.input_keep is empty; keep at least one input element")
        if self.input_shape is not None:
            self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.input_keep is not None:
            if self.input_shape is None:
                raise ValueError("plan.input_shape is required when plan.input_keep is set")
            n = math.prod(self.input_shape)
            if self.input_keep[-1] >= n:
                raise ValueError(
                    f"plan.input_keep index {self.input_keep[-1]} is out of range for an input "
                    f"of shape {self.input_shape} ({n} elements)"
                )
        self.dense_widths = {str(k): int(v) for k, v in self.dense_widths.items()}
        for name, kept in self.keep.items():
            width = self.dense_widths.get(name)
            if width is not None and kept[-1] >= width:
                raise ValueError(f"plan.keep[{name!r}] index {kept[-1]} >= dense width {width}")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (ints, lists, strings, None only)."""
        return {
            "version": PLAN_VERSION,
            "keep": {k: list(v) for k, v in self.keep.items()},
            "input_keep": None if self.input_keep is None else list(self.input_keep),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "dense_widths": dict(self.dense_widths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruningPlan:
        """Inverse of :meth:`to_dict`; accepts any Mapping (e.g. an OmegaConf DictConfig)."""
        version = int(data.get("version", PLAN_VERSION))
        if version != PLAN_VERSION:
            raise ValueError(f"unsupported plan version {version}; this code reads {PLAN_VERSION}")
        return cls(
            keep={k: list(v) for k, v in data.get("keep", {}).items()},
            input_keep=None if data.get("input_keep") is None else list(data["input_keep"]),
            input_shape=None if data.get("input_shape") is None else tuple(data["input_shape"]),
            dense_widths=dict(data.get("dense_widths", {})),
        )

    # -- algebra -------------------------------------------------------------------------------
    def compose(self, later: PruningPlan) -> PruningPlan:
        """Plan of ``self`` followed by ``later``, whose indices are relative to ``self``'s model.

        Producers that ``self`` did not prune still have their dense width, so ``later``'s
        indices for them are already dense indices.
        """
        keep = dict(self.keep)
        for name, kept in later.keep.items():
            keep[name] = _compose(self.keep[name], kept, name) if name in self.keep else kept
        input_keep = self.input_keep
        if later.input_keep is not None:
            input_keep = (
                later.input_keep
                if self.input_keep is None
                else _compose(self.input_keep, later.input_keep, "input_keep")
            )
        if (
            self.input_shape is not None
            and later.input_shape is not None
            and self.input_shape != later.input_shape
        ):
            raise ValueError(
                f"cannot compose plans for inputs {self.input_shape} and {later.input_shape}"
            )
        return PruningPlan(
            keep=keep,
            input_keep=input_keep,
            input_shape=self.input_shape or later.input_shape,
            dense_widths={**later.dense_widths, **self.dense_widths},
        )

    def relative_to(self, earlier: PruningPlan) -> PruningPlan:
        """The step from ``earlier``'s model to this plan's: ``earlier.compose(step) == self``.

        Raises:
            ValueError: if this plan keeps an index that ``earlier`` already removed.
        """
        keep = {
            name: _relative(kept, earlier.keep[name], name) if name in earlier.keep else kept
            for name, kept in self.keep.items()
        }
        dropped = sorted(set(earlier.keep) - set(self.keep))
        if dropped:
            raise ValueError(
                f"plan no longer lists pruned producers {dropped}; a plan cannot regrow"
            )
        input_keep = self.input_keep
        if earlier.input_keep is not None:
            if self.input_keep is None:
                raise ValueError("plan keeps all inputs, but its model already lost some")
            input_keep = _relative(self.input_keep, earlier.input_keep, "input_keep")
        return PruningPlan(keep, input_keep, self.input_shape, dict(self.dense_widths))

    # -- reporting -----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts for logs and ``results.json``: kept / dense units per producer and inputs."""
        layers = {
            name: {"kept": len(kept), "dense": self.dense_widths.get(name)}
            for name, kept in self.keep.items()
        }
        out: dict[str, Any] = {"layers": layers}
        if all(v["dense"] is not None for v in layers.values()) and layers:
            kept = sum(v["kept"] for v in layers.values())
            dense = sum(v["dense"] for v in layers.values())
            out.update(units_kept=kept, units_dense=dense, units_kept_ratio=kept / dense)
        if self.input_keep is not None and self.input_shape is not None:
            n = math.prod(self.input_shape)
            out.update(
                inputs_kept=len(self.input_keep),
                inputs_dense=n,
                inputs_kept_ratio=len(self.input_keep) / n,
            )
        return out
