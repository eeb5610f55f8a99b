"""absLRP: relative absolute magnitude propagation (Vukadin et al. 2024, ACM TIST 15(3):47).

Each layer ``y = f(x)`` also runs as its absolute twin ``f_abs(|x|)`` with ``|W|, |b|``; the
relevance of input ``i`` is ``x_i * d(y + y_abs)/dx_i^T (R / |y|)``, which for a linear layer is
``sum_j 2 max(x_i w_ij, 0) R_j / |y_j|``: dividing by the *absolute* output keeps the relative
magnitudes of neurons with outputs of different size. After every layer the relevance is
rescaled to unit L1 norm per sample; at a residual sum each branch is rescaled on its own.
BatchNorm is a layer of its own (merging it changes the result).

In a transformer (the paper's Vision Transformers) every part gets the same treatment: LayerNorm
with its mean and variance held constant, the softmax with its maximum and denominator held
constant, GELU, and both factors of ``q @ k^T`` and ``A @ v``, each with its absolute twin and
each input rescaled to unit L1 on its own. Selections (the class token), reshapes and eval-mode
dropout pass relevance unchanged; the authors' code also runs its absolute rule on the
class-token pool and on dropout layers, which there drops the relevance of negative values.

The contrastive map (the paper's default) is the map of the target class minus the map of all
other classes, each from a unit-sum output relevance: see :class:`prune.lrp.composites.AbsLRP`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.canonizers import batchnorm_affine
from prune.lrp.rules.base import Layer, LinearRule, Op, Rule, op_argument, ratio


def unit_l1(relevance: Tensor) -> Tensor:
    """``relevance`` rescaled per sample so that ``sum |relevance| == 1``."""
    norm = relevance.flatten(1).abs().sum(1).clamp_min(1e-30)
    return relevance / norm.reshape(-1, *([1] * (relevance.dim() - 1)))


class AbsLinear(LinearRule):
    """absLRP for linear and conv layers: ``R_i ~ x_i (W + sign(x_i) |W|)^T (R / |y|)``, unit L1
    (``2 max(x_i w_ij, 0)`` per contribution)."""

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        c = ratio(relevance, layer(x).abs(), 0.0)  # R / |y|
        w = layer.weight
        return unit_l1(x * (layer.transpose(c, w) + x.sign() * layer.transpose(c, w.abs())))


class AbsBatchNorm(Rule):
    """absLRP for an eval-mode BatchNorm kept as a layer, ``y = x s + t`` per channel:
    ``R_i ~ x_i (s + sign(x_i) |s|) R_i / |y_i|``, unit L1."""

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        if layer.module.running_var is None:
            raise NotImplementedError(f"absLRP needs running statistics in {layer.module}")
        scale, _ = batchnorm_affine(layer.module, x)
        s = scale.reshape(1, -1, *([1] * (x.dim() - 2)))
        c = ratio(relevance, layer(x).abs(), 0.0)
        return unit_l1(x * c * (s + x.sign() * s.abs()))


class AbsNorm(Rule):
    """absLRP for average pooling (coefficients ``J >= 0``): ``R_i ~ x_i (1 + sign(x_i))
    J^T (R / |y|)``, unit L1."""

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            y = layer(leaf)
        (jt,) = torch.autograd.grad(y, leaf, ratio(relevance, y.detach().abs(), 0.0))
        return unit_l1(x * jt * (1 + x.sign()))


class AbsSum(Rule):
    """absLRP for residual sums ``a + b``: ``R_a ~ a (1 + sign(a)) R / |a + b|``, each branch
    rescaled to unit L1 on its own."""

    def relevance(self, layer: Op, *inputs: Tensor, relevance: Tensor) -> tuple[Tensor, ...]:
        c = ratio(relevance, layer(*inputs).abs(), 0.0)
        return tuple(unit_l1(t * (c * (1 + t.sign())).sum_to_size(t.shape)) for t in inputs)


class AbsActivation(Rule):
    """absLRP for an elementwise non-linearity ``y = f(x)`` (GELU, SiLU, tanh), twin ``f(|x|)``:
    ``R_i ~ x_i (f'(x_i) + sign(x_i) f'(|x_i|)) R_i / |y_i|``, unit L1."""

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            y = layer(leaf)
            both = y + layer(leaf.abs())
        (grad,) = torch.autograd.grad(both, leaf, ratio(relevance, y.detach().abs(), 0.0))
        return unit_l1(x * grad)


class AbsLayerNorm(Rule):
    """absLRP for LayerNorm with its mean and variance held constant (the authors' LayerNorm).

    ``y = (x - mu) / sigma * w + b`` is then ``diag(w / sigma)`` in ``x``; its twin
    ``(|x| - mu') / sigma' * |w| + |b|`` takes the statistics of ``|x|``:
    ``R_i ~ x_i (w_i / sigma + sign(x_i) |w_i| / sigma') R_i / |y_i|``, unit L1.
    """

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        shape = op_argument(layer, 1, "normalized_shape", (x.shape[-1],))
        weight = op_argument(layer, 2, "weight", None)
        eps = op_argument(layer, 4, "eps", 1e-5)
        dims = tuple(range(-len(tuple(shape)), 0))

        def inverse_std(t: Tensor) -> Tensor:
            return (t.var(dims, unbiased=False, keepdim=True) + eps).rsqrt()

        w = torch.ones((), dtype=x.dtype, device=x.device) if weight is None else weight.detach()
        slope = w * inverse_std(x) + x.sign() * w.abs() * inverse_std(x.abs())
        return unit_l1(x * slope * ratio(relevance, layer(x).abs(), 0.0))


class AbsSoftmax(Rule):
    """absLRP for the softmax with its maximum and denominator held constant (the authors'
    softmax): ``y = exp(x - max x) / sum`` has slope ``y``, its twin ``softmax(|x|)`` the slope
    ``sign(x) softmax(|x|)``: ``R_i ~ x_i (y_i + sign(x_i) softmax(|x|)_i) R_i / |y_i|``, unit
    L1; masked scores (``-inf``) get none."""

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        dim = op_argument(layer, 1, "dim", -1)
        masked = torch.isneginf(x)
        twin = x.abs().masked_fill(masked, float("-inf")).softmax(dim)
        r = x * (layer(x) + x.sign() * twin) * ratio(relevance, layer(x).abs(), 0.0)
        return unit_l1(torch.where(masked, torch.zeros_like(r), r))


class AbsProduct(Rule):
    """absLRP for a product of activations (``q @ k^T``, ``A @ v``, ``a * b``), twin
    ``|a| @ |b|``: ``R_a ~ a (J_a + sign(a) J_|a|)^T (R / |y|)``, each factor unit L1 on its
    own. An elementwise product with one factor that needs relevance (``scores * scale``)
    passes it unchanged, as the authors' code does with the attention scale."""

    def relevance(self, layer: Op, *inputs: Tensor, relevance: Tensor) -> Tensor | tuple:
        if len(inputs) == 1:
            if layer.name != "mul":
                raise NotImplementedError(
                    f"absLRP has no rule for {layer.name!r} with a constant factor; "
                    "use an nn.Linear layer for a product with weights"
                )
            return relevance.sum_to_size(inputs[0].shape)
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in inputs]
            y = layer(*leaves)
            both = y + layer(*(leaf.abs() for leaf in leaves))
        grads = torch.autograd.grad(both, leaves, ratio(relevance, y.detach().abs(), 0.0))
        return tuple(unit_l1(t * g) for t, g in zip(inputs, grads, strict=True))
