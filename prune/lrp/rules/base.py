"""The rule protocol: what a rule is, the layer it sees, and the stabiliser it divides by.

A rule says how the relevance ``R`` at a layer's output is shared among the layer's inputs. It
implements one method, :meth:`Rule.relevance`: given the layer (a callable of its inputs), the
inputs, and the output relevance, return the input relevance. That is the rule's *reference
form*: the formula of its paper, written with plain tensor operations, which the engine runs as
one autograd node per layer. The engine takes care of everything around it (where relevance
comes from, the model input, recording); a faster equivalent of a rule, when there is one, lives
apart in :mod:`prune.lrp.fast` and must give the same relevance.

Notation (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview"): a linear layer
maps ``x`` to ``z = W x + b``; most rules compute ``R_in = x * W'^T (R / stab(z'))`` for some
modified weights ``W'`` and normaliser ``z'``. Stabilisers add ``epsilon`` with the sign of the
denominator (zero counts as positive), as Zennit does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Rule:
    """How relevance passes through one layer or functional op; a stateless template.

    Subclasses implement :meth:`relevance`. A rule instance may serve many layers at once, so it
    keeps no state between calls: constructor arguments only.
    """

    def relevance(
        self, layer: Callable[..., Tensor], *inputs: Tensor, relevance: Tensor
    ) -> Tensor | tuple[Tensor, ...]:
        """The relevance at each input of ``layer``, given ``relevance`` at its output.

        Args:
            layer: the layer as a callable of its inputs (a :class:`Layer` for linear and
                convolutional layers).
            inputs: the layer's inputs, detached.
            relevance: relevance at the layer's output, shaped like the output.

        Returns:
            One tensor per input, shaped like it (a bare tensor for a single input).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class LinearRule(Rule):
    """A rule for linear and convolutional layers: its ``layer`` is a :class:`Layer`."""

    def relevance(self, layer: Layer, x: Tensor, *, relevance: Tensor) -> Tensor:
        """The relevance at the input ``x`` of ``layer``, given ``relevance`` at its output."""
        raise NotImplementedError


class Layer:
    """A linear or convolutional layer as a rule sees it: its parameters and its products.

    ``layer(x)`` is the layer's output; :meth:`forward` the same product with other weights,
    :meth:`transpose` the transposed product ``W^T s``.

    Args:
        module: an ``nn.Linear`` or ``nn.ConvNd``.
        weight: the weight the rule uses (after canonizers such as a merged BatchNorm).
        bias: the bias the rule uses, or None.
        in_shape: shape of the layer's input (the transposed product's output).
    """

    def __init__(
        self, module: nn.Module, weight: Tensor, bias: Tensor | None, in_shape: torch.Size
    ) -> None:
        self.module, self.weight, self.bias, self.in_shape = module, weight, bias, in_shape

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x, self.weight, self.bias)

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """``x`` through the layer with ``weight`` and ``bias``."""
        if isinstance(self.module, nn.Linear):
            return F.linear(x, weight, bias)
        return self.module._conv_forward(x, weight, bias)

    def transpose(self, s: Tensor, weight: Tensor) -> Tensor:
        """``W^T s`` for ``s`` shaped like the output: the gradient of ``forward(., weight)``."""
        with torch.enable_grad():
            x = s.new_zeros(self.in_shape, requires_grad=True)
            (grad,) = torch.autograd.grad(self.forward(x, weight), x, s)
        return grad


class Op:
    """A layer without weights of its own (activation, pool, BatchNorm) or a functional op
    (``a + b``, ``x.mean(-1)``), as a rule sees it: a callable of its inputs.

    Args:
        fn: computes the output from the inputs (constants and options already bound).
        module: the layer, or None for a functional op.
        name: the functional op's name (``"add"``, ``"mean"``), or the layer's type name.
        args: a functional op's positional arguments as called (inputs, constants, options).
        kwargs: its keyword arguments.
    """

    def __init__(
        self,
        fn: Callable[..., Tensor],
        module: nn.Module | None = None,
        name: str = "",
        args: tuple = (),
        kwargs: dict | None = None,
    ) -> None:
        self.fn, self.module = fn, module
        self.name = name or (type(module).__name__ if module is not None else "")
        self.args, self.kwargs = args, kwargs or {}

    def __call__(self, *inputs: Tensor) -> Tensor:
        return self.fn(*inputs)


def op_argument(layer: Op, position: int, name: str, default: Any) -> Any:
    """An option of ``layer`` (``dim``, ``eps``, ``weight``): the module's attribute of that name,
    else the functional op's keyword, else its positional argument at ``position``."""
    if layer.module is not None:
        return getattr(layer.module, name, default)
    if name in layer.kwargs:
        return layer.kwargs[name]
    return layer.args[position] if len(layer.args) > position else default


def check_nonneg(name: str, value: float) -> float:
    """``value`` as a float, or a ``ValueError`` that names it when it is negative."""
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """Move ``z`` away from zero by ``epsilon`` in the direction of its sign (zero counts as +)."""
    # sign(sign(z) + 1/2) is the sign with zero counted as +1 (NaN stays NaN). Built from
    # float ops only: on CPU a comparison and a where over the bool mask cost several times
    # as much
    return z.sign().add_(0.5).sign_().mul_(epsilon).add_(z)


def ratio(z: Tensor, denominator: Tensor, epsilon: float) -> Tensor:
    """``z / stabilize(denominator)``; with ``epsilon == 0`` a zero denominator gives 0, not NaN."""
    if epsilon == 0:
        safe = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
        return torch.where(denominator == 0, torch.zeros_like(z), z / safe)
    return z / stabilize(denominator, epsilon)


def divide_by_input(relevance: Tensor, x: Tensor) -> Tensor:
    """Turn a relevance into the gradient form ``R / x`` (0 where ``x == 0``).

    The engine passes relevance backward as a gradient ``g`` with ``R = x * g``; a rule's input
    relevance is turned into that form here. Relevance that lands on an exactly-zero input is
    then lost (absorbed), unless the input is the model's own.
    """
    zero = x == 0
    return torch.where(zero, torch.zeros_like(relevance), relevance / torch.where(zero, 1, x))


def positive(t: Tensor | None) -> Tensor | None:
    """``max(t, 0)``, passing ``None`` through."""
    return None if t is None else t.clamp(min=0)


def negative(t: Tensor | None) -> Tensor | None:
    """``min(t, 0)``, passing ``None`` through."""
    return None if t is None else t.clamp(max=0)


def nonnegative(x: Tensor) -> bool:
    """Whether every entry of ``x`` is >= 0 (inputs after a ReLU), which enables fast paths."""
    return x.numel() == 0 or x.detach().min().item() >= 0  # a Python compare: one op fewer
