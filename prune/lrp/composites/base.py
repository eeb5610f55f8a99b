"""The composite: which rule goes on which layer and functional op; maps by type and by name.

The named presets are in :mod:`.presets` (CNNs), :mod:`.transformer` (AttnLRP, CP-LRP) and
:mod:`.abslrp`; each registers itself in :data:`COMPOSITES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from prune.checks import Check, finite_number
from prune.lrp.canonizers import Canonizer, MergeBatchNorm
from prune.lrp.rules import Gate, Norm, Pass, Rule
from prune.lrp.types import (
    ACTIVATION_TYPES,
    AVGPOOL_TYPES,
    BATCHNORM_TYPES,
    TRANSPARENT_TYPES,
    torch_equivalent,
)
from prune.registry import Registry

#: Registry of named composites, for configs and ``attribute(..., composite="name")``.
COMPOSITES: Registry[Composite] = Registry("composite")

LayerMapping = Sequence[tuple[type[nn.Module] | tuple[type[nn.Module], ...], Rule]]

#: Allowed values of the presets' stabilisers (``config_checks``, see :mod:`prune.checks`).
STABILIZER_CHECKS: dict[str, Check] = {
    "epsilon": finite_number(0),
    "stabilizer": finite_number(0),
}


class Composite:
    """Assigns a rule to each layer of a model.

    Args:
        canonizers: model rewrites applied for the pass (default: merge BatchNorm into the layer
            before it); pass ``[]`` to keep BatchNorm as a layer of its own.
        op_map: rules for functional ops in a module's forward, by op: ``add`` (``a + b``),
            ``sum``, ``mean`` (also functional average pools), ``mul``, ``matmul`` (also ``bmm``,
            ``@``), ``softmax``, ``layer_norm``, ``scaled_dot_product_attention``, ``cat``.
            Default: the z-rule (:class:`~prune.lrp.rules.Norm`) for ``add``, ``sum`` and
            ``mean``, the gate rule (:class:`~prune.lrp.rules.Gate`) for ``mul``. An op without
            a rule is an error, except ``cat``, which then only moves values.
        transparent: leaf types that run natively (their gradient is the rule).
    """

    def __init__(
        self,
        canonizers: Sequence[Canonizer] | None = None,
        op_map: Mapping[str, Rule] | None = None,
        transparent: tuple[type[nn.Module], ...] = TRANSPARENT_TYPES,
    ) -> None:
        self.canonizers = [MergeBatchNorm()] if canonizers is None else list(canonizers)
        self.op_map = default_op_map() if op_map is None else dict(op_map)
        unknown = sorted(set(self.op_map) - set(OPS))
        if unknown:
            raise KeyError(f"op_map has unknown ops {unknown}; choose from {list(OPS)}")
        self.transparent = transparent
        self.num_maps = 1

    def rule_for(self, state: dict[str, Any], name: str, module: nn.Module) -> Rule | None:
        """The rule for ``module`` called ``name`` (a leaf, or a container that a composite
        treats as one layer), or None; ``state`` is fresh for each model pass."""
        raise NotImplementedError

    def is_transparent(self, module: nn.Module) -> bool:
        """Whether ``module`` runs natively because its gradient already is the right rule: one of
        the ``transparent`` types, a module whose torch equivalent is one (torchvision's
        ``StochasticDepth``, timm's ``DropPath``: dropout, see
        :func:`~prune.lrp.types.torch_equivalent`), or one with ``lrp_transparent = True``."""
        if isinstance(module, self.transparent) or getattr(module, "lrp_transparent", False):
            return True
        twin = torch_equivalent(module)
        return twin is not None and issubclass(twin, self.transparent)

    def seeds(self, logits: Tensor, relevance: Tensor) -> list[tuple[float, Tensor]]:
        """``num_maps`` output relevances to propagate, each with its weight in the result."""
        return [(1.0, relevance)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: The functional ops an ``op_map`` can give a rule to.
OPS = (
    "add",
    "sum",
    "mean",
    "mul",
    "matmul",
    "softmax",
    "layer_norm",
    "scaled_dot_product_attention",
    "cat",
)


def default_op_map(stabilizer: float = 1e-6) -> dict[str, Rule]:
    """The z-rule for sums and means (residual connections, global pooling) and the gate rule for
    elementwise products (squeeze-and-excitation: all relevance to the gated feature map)."""
    rule = Norm(stabilizer)
    return {"add": rule, "sum": rule, "mean": rule, "mul": Gate()}


def base_layer_map(stabilizer: float = 1e-6) -> list[tuple[tuple[type[nn.Module], ...], Rule]]:
    """Rules shared by the presets: pass for activations and BatchNorm, z-rule for average pools."""
    return [
        (ACTIVATION_TYPES, Pass()),
        (AVGPOOL_TYPES, Norm(stabilizer)),
        (BATCHNORM_TYPES, Pass()),
    ]


class LayerMap(Composite):
    """Rules by layer type: the first ``(types, rule)`` entry that matches wins.

    Args:
        layer_map: ``[(types, rule), ...]``.
        canonizers: see :class:`Composite`.
        op_map: see :class:`Composite`.
    """

    def __init__(
        self,
        layer_map: LayerMapping,
        canonizers: Sequence[Canonizer] | None = None,
        op_map: Mapping[str, Rule] | None = None,
    ) -> None:
        super().__init__(canonizers=canonizers, op_map=op_map)
        self.layer_map = list(layer_map)

    def rule_for(self, state: dict[str, Any], name: str, module: nn.Module) -> Rule | None:
        """First rule whose types match ``module`` or its torch equivalent (timm's activations
        match the torch ones, see :func:`~prune.lrp.types.torch_equivalent`)."""
        twin = torch_equivalent(module)
        for types, rule in self.layer_map:
            if isinstance(module, types) or (twin is not None and issubclass(twin, types)):
                return rule
        return None


class SpecialFirstLayer(LayerMap):
    """Like :class:`LayerMap`, but the first layer matching ``first_map`` gets that rule.

    "First" is registration order (``named_modules``), as in Zennit.

    Args:
        layer_map: ``[(types, rule), ...]`` for all other layers.
        first_map: ``[(types, rule), ...]`` for the first matching layer.
        canonizers: see :class:`Composite`.
        op_map: see :class:`Composite`.
    """

    def __init__(
        self,
        layer_map: LayerMapping,
        first_map: LayerMapping,
        canonizers: Sequence[Canonizer] | None = None,
        op_map: Mapping[str, Rule] | None = None,
    ) -> None:
        super().__init__(layer_map, canonizers=canonizers, op_map=op_map)
        self.first_map = list(first_map)

    def rule_for(self, state: dict[str, Any], name: str, module: nn.Module) -> Rule | None:
        """The first-layer rule once, then the layer map."""
        if not state.get("first_done"):
            for types, rule in self.first_map:
                if isinstance(module, types):
                    state["first_done"] = True
                    return rule
        return super().rule_for(state, name, module)


class NameMap(Composite):
    """Rules by qualified module name, falling back to another composite for unnamed layers.

    Args:
        name_map: ``{name: rule}`` or ``[(names, rule), ...]``.
        fallback: composite asked for layers not in ``name_map`` (its canonizers and sum rule are
            used too); without one, unnamed layers other than transparent ones are an error.
            A name may be a container's: it then runs as one layer with that rule.
    """

    def __init__(
        self,
        name_map: Mapping[str, Rule] | Sequence[tuple[Sequence[str], Rule]],
        fallback: Composite | None = None,
    ) -> None:
        if isinstance(name_map, Mapping):
            self.name_map = dict(name_map)
        else:
            self.name_map = {name: rule for names, rule in name_map for name in names}
        self.fallback = fallback
        super().__init__(
            canonizers=fallback.canonizers if fallback else [],
            op_map=fallback.op_map if fallback else None,
        )

    def rule_for(self, state: dict[str, Any], name: str, module: nn.Module) -> Rule | None:
        """The named rule, else the fallback's."""
        if name in self.name_map:
            return self.name_map[name]
        return self.fallback.rule_for(state, name, module) if self.fallback else None


def get_composite(name: str | Composite, **kwargs: Any) -> Composite:
    """A composite from its registered name (with constructor kwargs) or as given.

    Raises:
        KeyError: for an unknown name, listing the registered ones.
    """
    if isinstance(name, Composite):
        if kwargs:
            raise TypeError("keyword arguments only apply when the composite is given by name")
        return name
    return COMPOSITES.get(name, **kwargs)
