"""Rules for the parts of a transformer: LayerNorm, softmax and the products of attention.

AttnLRP (Achtibat et al. 2024, "AttnLRP: Attention-Aware Layer-wise Relevance Propagation for
Transformers") gives the softmax a rule of its own (:class:`SoftmaxTaylor`) and shares the
relevance of a product of several factors among them evenly (:class:`Uniform`); CP-LRP (Ali et
al. 2022, "XAI for Transformers: Better Explanations through Conservative Propagation") holds
the attention weights constant, so that all relevance flows through the values
(:class:`HeldConstant`). Both treat LayerNorm's standard deviation as a constant
(:class:`LayerNormIdentity`) and pass relevance through GELU unchanged
(:class:`~prune.lrp.rules.Pass`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.rules.base import Op, Rule, check_nonneg, op_argument, ratio


class LayerNormIdentity(Rule):
    """LayerNorm with its standard deviation held constant (AttnLRP, Proposition 3.4; CP-LRP).

    ``y = (x - mean(x)) / sigma * w + b`` is then linear in ``x``; the relevance is shared by
    the z-rule over that map, ``R_i = x_i sum_j J_ji R_j / stab(y_j)`` with ``J`` its Jacobian
    at constant ``sigma``: the normalisation passes relevance as the identity would, the
    centring and the affine map share it with the bias absorbing its part.

    Args:
        epsilon: stabiliser added to ``y`` with its sign, >= 0.
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = check_nonneg("epsilon", epsilon)

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        shape = op_argument(layer, 1, "normalized_shape", (x.shape[-1],))
        weight = op_argument(layer, 2, "weight", None)
        bias = op_argument(layer, 3, "bias", None)
        eps = op_argument(layer, 4, "eps", 1e-5)
        dims = tuple(range(-len(tuple(shape)), 0))
        sigma = (x.var(dims, unbiased=False, keepdim=True) + eps).sqrt()
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            y = (leaf - leaf.mean(dims, keepdim=True)) / sigma
            y = y if weight is None else y * weight.detach()
            y = y if bias is None else y + bias.detach()
        (grad,) = torch.autograd.grad(y, leaf, ratio(relevance, y.detach(), self.epsilon))
        return x * grad


class SoftmaxTaylor(Rule):
    """AttnLRP's softmax rule (Proposition 3.1): deep Taylor decomposition at ``x``.

    ``R_i = x_i (R_i - s_i sum_j R_j)`` for ``s = softmax(x)`` along the softmax's dimension;
    masked inputs (``-inf``) get none.
    """

    def relevance(self, layer: Op, x: Tensor, *, relevance: Tensor) -> Tensor:
        dim = op_argument(layer, 1, "dim", -1)
        s = layer(x)
        x = torch.where(torch.isneginf(x), torch.zeros_like(x), x)
        return x * (relevance - s * relevance.sum(dim, keepdim=True))


class Uniform(Rule):
    """AttnLRP's uniform rule for a product of ``n`` factors (Propositions 3.2 and 3.3).

    Each factor gets the epsilon rule's share of ``1/n`` of the relevance:
    ``R_a = a * J_a^T (R / stab(n z))`` for ``z = a @ b`` or ``a * b``; an elementwise product
    gives each factor ``R / n``. A product with one factor that needs relevance (``x * 0.5``)
    passes it all to that factor.

    Args:
        stabilizer: added to ``n z`` with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def relevance(self, layer: Op, *inputs: Tensor, relevance: Tensor) -> tuple[Tensor, ...]:
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_() for x in inputs]
            z = layer(*leaves)
        s = ratio(relevance, len(inputs) * z.detach(), self.stabilizer)
        grads = torch.autograd.grad(z, leaves, s)
        return tuple(x * g for x, g in zip(inputs, grads, strict=True))


class HeldConstant(Rule):
    """CP-LRP's rule for ``A @ v``: the attention weights held constant (Ali et al. 2022).

    The product is linear in its last factor; the epsilon rule shares the relevance over it,
    ``R_v = v * J_v^T (R / stab(z))``, and the other factors (the attention weights) get none,
    so relevance flows through the values alone.

    Args:
        stabilizer: added to ``z`` with its sign, >= 0.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_nonneg("stabilizer", stabilizer)

    def relevance(self, layer: Op, *inputs: Tensor, relevance: Tensor) -> tuple[Tensor, ...]:
        *held, last = inputs
        with torch.enable_grad():
            leaf = last.detach().requires_grad_()
            z = layer(*held, leaf)
        s = ratio(relevance, z.detach(), self.stabilizer)
        (grad,) = torch.autograd.grad(z, leaf, s)
        return (*(torch.zeros_like(h) for h in held), last * grad)


class Attention(Rule):
    """``scaled_dot_product_attention(q, k, v)`` written out, each product with its rule.

    The op is ``A = softmax(q k^T * scale + mask)``, ``out = A v``; the relevance passes back
    through ``A v`` by ``product``, through the softmax by ``softmax`` and through ``q k^T`` by
    ``product`` again (the scale passes it unchanged; a boolean or ``-inf`` mask takes none).

    Args:
        product: the rule of the two products (:class:`Uniform` for AttnLRP,
            :class:`HeldConstant` for CP-LRP).
        softmax: the softmax's rule.
    """

    def __init__(self, product: Rule, softmax: Rule) -> None:
        self.product, self.softmax = product, softmax

    def relevance(self, layer: Op, q: Tensor, k: Tensor, v: Tensor, *, relevance: Tensor):
        names = ("attn_mask", "dropout_p", "is_causal", "scale")
        kwargs = {**dict(zip(names, layer.args[3:], strict=False)), **layer.kwargs}
        scale = kwargs.get("scale") or q.shape[-1] ** -0.5
        scores = (q @ k.transpose(-2, -1)) * scale
        raw, mask = scores, kwargs.get("attn_mask")
        if kwargs.get("is_causal"):
            n, m = scores.shape[-2:]
            mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril()
        if mask is not None and mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask is not None:
            scores = scores + mask
        attn = scores.softmax(-1)
        r_attn, r_v = self.product.relevance(Op(torch.matmul), attn, v, relevance=relevance)
        r_scores = self.softmax.relevance(
            Op(lambda t: t.softmax(-1), name="softmax", args=(scores, -1)),
            scores,
            relevance=r_attn,
        )
        r_scores = torch.where(torch.isneginf(scores), torch.zeros_like(r_scores), r_scores)
        if mask is not None and mask.dtype != torch.bool:  # an additive mask absorbs its share
            r_scores = ratio(r_scores * raw, scores, 1e-12)
        r_q, r_k = self.product.relevance(
            Op(lambda a, b: a @ b.transpose(-2, -1)), q, k, relevance=r_scores
        )
        return r_q, r_k, r_v
