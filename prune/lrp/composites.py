"""Composites: which rule goes on which layer and functional op, with named presets.

Presets follow Zennit's names and mixes (Montavon et al. 2019, sec. 10.3; Kohlbrenner et al.
2020): epsilon for dense layers, a rule favouring positive contributions for convolutions, and an
optional special first layer. Activations pass relevance through, average pools, residual sums
and means use the z-rule, max-pools winner-takes-all, an elementwise product holds its gate
constant (squeeze-and-excitation); BatchNorm is merged into the layer before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from prune.checks import Check, boolean, finite_number
from prune.errors import ConfigError
from prune.lrp.attention_canonizer import ExplicitMultiheadAttention
from prune.lrp.canonizers import Canonizer, MergeBatchNorm
from prune.lrp.layer_scale_canonizer import ExplicitLayerScale
from prune.lrp.rules import (
    AbsActivation,
    AbsBatchNorm,
    AbsLayerNorm,
    AbsLinear,
    AbsNorm,
    AbsProduct,
    AbsSoftmax,
    AbsSum,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gate,
    Norm,
    Pass,
    Rule,
    ZBox,
    ZPlus,
)
from prune.lrp.rules.transformer import (
    Attention,
    HeldConstant,
    LayerNormIdentity,
    SoftmaxTaylor,
    Uniform,
)
from prune.lrp.types import (
    ACTIVATION_TYPES,
    AVGPOOL_TYPES,
    BATCHNORM_TYPES,
    CONV_TYPES,
    LINEAR_TYPES,
    TRANSPARENT_TYPES,
    torch_equivalent,
)
from prune.registry import Registry

#: Registry of named composites, for configs and ``attribute(..., composite="name")``.
COMPOSITES: Registry[Composite] = Registry("composite")

LayerMapping = Sequence[tuple[type[nn.Module] | tuple[type[nn.Module], ...], Rule]]

#: Box bounds of MNIST pixels in [0, 1] after normalising with mean 0.1307 and std 0.3081.
MNIST_LOW, MNIST_HIGH = -0.4242, 2.8215

#: Allowed values of the presets' stabilisers (``config_checks``, see :mod:`prune.checks`).
STABILIZER_CHECKS: dict[str, Check] = {
    "epsilon": finite_number(0),
    "stabilizer": finite_number(0),
}

#: ... and of the transformer composites, whose linear layers may take gamma instead of epsilon.
TRANSFORMER_CHECKS: dict[str, Check] = {
    **STABILIZER_CHECKS,
    "gamma": finite_number(0, nullable=True),
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


@COMPOSITES.register("epsilon")
class EpsilonOnly(LayerMap):
    """LRP-epsilon on every linear and convolutional layer (Bach et al. 2015).

    Closest to gradient times input; costs about one forward and one backward.

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the z-rule on pools and sums.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = [*base_layer_map(stabilizer), (LINEAR_TYPES, Epsilon(epsilon))]
        super().__init__(layer_map, canonizers=canonizers, op_map=default_op_map(stabilizer))


def _conv_dense(conv_rule: Rule, epsilon: float, stabilizer: float) -> list:
    return [*base_layer_map(stabilizer), (CONV_TYPES, conv_rule), (nn.Linear, Epsilon(epsilon))]


@COMPOSITES.register("epsilon_plus")
class EpsilonPlus(LayerMap):
    """z+ on convolutions, epsilon on dense layers (Kohlbrenner et al. 2020; Zennit's preset).

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(ZPlus(stabilizer), epsilon, stabilizer)
        super().__init__(layer_map, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_alpha2_beta1")
class EpsilonAlpha2Beta1(LayerMap):
    """alpha2-beta1 on convolutions, epsilon on dense layers (Zennit ``EpsilonAlpha2Beta1``).

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(AlphaBeta(2.0, 1.0, stabilizer), epsilon, stabilizer)
        super().__init__(layer_map, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_plus_flat")
class EpsilonPlusFlat(SpecialFirstLayer):
    """:class:`EpsilonPlus` with flat on the first linear or conv layer (Zennit's preset).

    Not for input pruning: flat makes input relevance independent of the pixels.

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(ZPlus(stabilizer), epsilon, stabilizer)
        first = [(LINEAR_TYPES, Flat(stabilizer))]
        super().__init__(layer_map, first, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_alpha2_beta1_flat")
class EpsilonAlpha2Beta1Flat(SpecialFirstLayer):
    """:class:`EpsilonAlpha2Beta1` with flat on the first linear or conv layer (Zennit's preset).

    Args:
        epsilon: stabiliser of the epsilon rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = STABILIZER_CHECKS

    def __init__(
        self,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(AlphaBeta(2.0, 1.0, stabilizer), epsilon, stabilizer)
        first = [(LINEAR_TYPES, Flat(stabilizer))]
        super().__init__(layer_map, first, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("epsilon_gamma_box")
class EpsilonGammaBox(SpecialFirstLayer):
    """z^B on the first convolution, gamma on the others, epsilon on dense layers (Zennit's preset).

    As in Zennit, only a convolution gets the box rule: an MLP is explained with epsilon on its
    first layer too.

    Args:
        low: lowest input value in the model's (normalised) input space; float or tensor
            broadcastable to one sample. Default: MNIST pixel 0 after normalisation.
        high: highest input value, same form. Default: MNIST pixel 1 after normalisation.
        epsilon: stabiliser of the epsilon rule.
        gamma: gamma of the gamma rule.
        stabilizer: stabiliser of the other rules.
        canonizers: see :class:`Composite`.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        **STABILIZER_CHECKS,
        "gamma": finite_number(0),
        "low": finite_number(nullable=True),
        "high": finite_number(nullable=True),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """``low`` below ``high`` when both are given."""
        low, high = values.get("low"), values.get("high")
        if low is not None and high is not None and not low < high:
            raise ConfigError(
                f"{prefix}low must be below {prefix}high, got low={low!r}, high={high!r}"
            )

    def __init__(
        self,
        low: float | Tensor = MNIST_LOW,
        high: float | Tensor = MNIST_HIGH,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        layer_map = _conv_dense(Gamma(gamma, stabilizer), epsilon, stabilizer)
        first = [(CONV_TYPES, ZBox(low, high, stabilizer))]
        super().__init__(layer_map, first, canonizers=canonizers, op_map=default_op_map(stabilizer))


@COMPOSITES.register("abslrp")
class AbsLRP(LayerMap):
    """absLRP, relative absolute magnitude propagation (Vukadin et al. 2024).

    See :mod:`prune.lrp.rules.abslrp`.

    Every linear, conv, BatchNorm (kept as its own layer), average pool and activation uses the
    absolute rule with per-sample L1 rescaling; residual sums rescale each branch separately. In
    transformers LayerNorm, the softmax and both factors of the attention products take it too
    (also inside ``scaled_dot_product_attention``). The result is the contrastive map: the map of
    the target minus the map of all other classes.

    Args:
        contrastive: subtract the map of all other classes (the paper's default).
    """

    config_checks: ClassVar[dict[str, Check]] = {"contrastive": boolean()}

    def __init__(self, contrastive: bool = True) -> None:
        product, softmax = AbsProduct(), AbsSoftmax()
        layer_map = [
            ((nn.ReLU,), Pass()),  # the absolute rule on a ReLU is the pass rule, rescaled
            (ACTIVATION_TYPES, AbsActivation()),
            (LINEAR_TYPES, AbsLinear()),
            (BATCHNORM_TYPES, AbsBatchNorm()),
            (AVGPOOL_TYPES, AbsNorm()),
            ((nn.LayerNorm,), AbsLayerNorm()),
            ((nn.Softmax,), softmax),
        ]
        op_map = {
            "add": AbsSum(),
            "mean": AbsNorm(),
            "mul": product,
            "matmul": product,
            "softmax": softmax,
            "layer_norm": AbsLayerNorm(),
            "scaled_dot_product_attention": Attention(product, softmax),
        }
        super().__init__(layer_map, canonizers=transformer_canonizers(merge=False), op_map=op_map)
        self.contrastive = contrastive
        self.num_maps = 2 if contrastive else 1

    def seeds(self, logits: Tensor, relevance: Tensor) -> list[tuple[float, Tensor]]:
        """Unit-sum one-hot relevance, and unit-sum relevance on all other classes (subtracted).

        ``relevance`` should sit on one class per sample (a class index or a one-hot target):
        an output relevance on several classes (softmax gradient, margin) becomes a mix of
        them, normalised to sum 1, and its "other classes" are the remaining ones."""
        target = relevance.abs()
        target = target / target.sum(1, keepdim=True).clamp_min(1e-30)
        if not self.contrastive:
            return [(1.0, target)]
        rest = (target == 0).to(target)
        rest = rest / rest.sum(1, keepdim=True).clamp_min(1e-30)
        return [(1.0, target), (-1.0, rest)]

    def __repr__(self) -> str:
        return f"AbsLRP(contrastive={self.contrastive})"


@COMPOSITES.register("attnlrp")
class AttnLRP(LayerMap):
    """AttnLRP for transformers (Achtibat et al. 2024; the rules of LXT).

    Epsilon on linear and convolutional layers (a BatchNorm merged into the layer before it),
    LayerNorm with its standard deviation held constant, the identity (pass) rule on GELU and
    other activations, the softmax's deep Taylor rule, the uniform rule for the products of
    attention (``q @ k^T``, ``A @ v``, also inside ``scaled_dot_product_attention``) and for
    elementwise products, and the z-rule for residual sums and means.

    Args:
        epsilon: stabiliser of the epsilon and LayerNorm rules.
        stabilizer: stabiliser of the z-rule and the uniform rule.
        gamma: when set, gamma with this value on the linear layers instead of epsilon (a
            choice "Pruning By Explaining Revisited" tunes for pruning).
    """

    config_checks: ClassVar[dict[str, Check]] = TRANSFORMER_CHECKS

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, gamma: float | None = None
    ) -> None:
        layers = _transformer_layers(epsilon, gamma)
        ops = _transformer_ops(epsilon, stabilizer, Uniform(stabilizer))
        super().__init__(layers, canonizers=transformer_canonizers(merge=True), op_map=ops)


@COMPOSITES.register("cp_lrp")
class CPLRP(LayerMap):
    """CP-LRP for transformers (Ali et al. 2022): the attention weights held constant.

    As :class:`AttnLRP`, but a product ``A @ v`` passes all relevance through its last factor,
    the values, and none to the attention weights (the softmax then receives none).

    Args:
        epsilon: stabiliser of the epsilon and LayerNorm rules.
        stabilizer: stabiliser of the z-rule and the products' epsilon rule.
        gamma: as in :class:`AttnLRP`.
    """

    config_checks: ClassVar[dict[str, Check]] = TRANSFORMER_CHECKS

    def __init__(
        self, epsilon: float = 1e-6, stabilizer: float = 1e-6, gamma: float | None = None
    ) -> None:
        products = HeldConstant(stabilizer)
        layers = _transformer_layers(epsilon, gamma)
        ops = _transformer_ops(epsilon, stabilizer, products)
        super().__init__(layers, canonizers=transformer_canonizers(merge=True), op_map=ops)


def transformer_canonizers(merge: bool) -> list[Canonizer]:
    """``nn.MultiheadAttention`` and timm's LayerScale written out, BatchNorm merged if
    ``merge``."""
    return [
        *([MergeBatchNorm()] if merge else []),
        ExplicitMultiheadAttention(),
        ExplicitLayerScale(),
    ]


def _transformer_ops(epsilon: float, stabilizer: float, products: Rule) -> dict[str, Rule]:
    """A transformer's functional ops; ``products``: the rule of ``q @ k^T`` and ``A @ v``."""
    return {
        **default_op_map(stabilizer),
        "mul": Uniform(stabilizer),
        "matmul": products,
        "softmax": SoftmaxTaylor(),
        "layer_norm": LayerNormIdentity(epsilon),
        "scaled_dot_product_attention": Attention(products, SoftmaxTaylor()),
    }


def _transformer_layers(epsilon: float, gamma: float | None) -> list:
    linear = Epsilon(epsilon) if gamma is None else Gamma(gamma, epsilon)
    return [
        (nn.LayerNorm, LayerNormIdentity(epsilon)),
        (ACTIVATION_TYPES, Pass()),
        (AVGPOOL_TYPES, Norm(epsilon)),
        (LINEAR_TYPES, linear),
        ((nn.Softmax,), SoftmaxTaylor()),
    ]


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
