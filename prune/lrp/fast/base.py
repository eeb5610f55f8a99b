"""Kernels: the fast forms of rules, and the autograd nodes of the linear-layer kernels.

A kernel gives exactly the relevance of its rule's reference form (:mod:`prune.lrp.rules`) with
less work. Relevance travels backward as a *modified gradient* ``g`` with the invariant
``R = a * g``: the relevance of a tensor ``a`` is the tensor times the gradient that arrives at
it. Under this invariant the backward pass of an LRP-0 network is the plain gradient, a ReLU,
max-pool, flatten or dropout needs no rule at all (their ordinary gradient is the pass /
winner-takes-all rule), and a linear layer's kernel only rescales the gradient at its output
(``z / (z + eps)`` for epsilon) and applies the transposed, possibly modified, weights. The common
case runs on autograd's own nodes with the rescale fused into the next ReLU
(:meth:`LinearKernel.fast`, :mod:`prune.lrp.fast.flow`); the general case (inputs of both signs,
rules that return relevance at the model input) is one custom node per layer.

Where a rule's input relevance is not proportional to its input (flat, w-square and z-box on the
model input), the kernel returns the relevance itself; the engine knows which tensors are aliases
of the model input and reads the result accordingly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prune.lrp.fast.fold import FoldConv, fold_transpose, use_fold
from prune.lrp.rules.base import Rule
from prune.lrp.state import RunState
from prune.lrp.types import CONV_TYPES, LINEAR_TYPES


def block_weight(blocks: list[list[Tensor]]) -> Tensor:
    """The weights ``blocks[i][j]`` (output block i, input block j) as one layer's weight."""
    return torch.cat([torch.cat(row, 1) for row in blocks])


def takes_relevance(t: object) -> bool:
    """Whether ``t`` is an input that a functional op shares relevance with: a tensor that needs
    a gradient and is no parameter (``x + self.pos_embed`` shares it with ``x`` alone)."""
    return isinstance(t, Tensor) and t.requires_grad and not isinstance(t, nn.Parameter)


class LinearOp:
    """Forward and transposed products of a linear or convolutional layer with given weights.

    Args:
        module: an ``nn.Linear`` or ``nn.ConvNd`` with zero padding mode and numeric padding.

    Raises:
        NotImplementedError: for string padding or a padding mode other than zeros.
    """

    def __init__(self, module: nn.Module) -> None:
        self.is_conv = isinstance(module, CONV_TYPES)
        if self.is_conv:
            if isinstance(module.padding, str) or module.padding_mode != "zeros":
                raise NotImplementedError(
                    f"LRP supports zero-padded convolutions with numeric padding only, got "
                    f"padding={module.padding!r}, padding_mode={module.padding_mode!r} in {module}"
                )
            self.dims = len(module.kernel_size)
            self.stride, self.padding = module.stride, module.padding
            self.dilation, self.groups = module.dilation, module.groups
            self._conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        self._fold = self.is_conv and self.dims == 2 and self.groups == 1

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``x`` through the layer with ``weight`` and ``bias`` (a batch of 1 broadcasts)."""
        if not self.is_conv:
            return F.linear(x, weight, bias)
        if (
            self._fold
            and x.requires_grad
            and not weight.requires_grad
            and (bias is None or not bias.requires_grad)
            and use_fold(weight, x)
            and not torch.is_autocast_enabled(x.device.type)
        ):  # a first layer: its input gradient by fold.py
            return FoldConv.apply(x, weight, bias, self.stride, self.padding, self.dilation)
        return self._conv(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward_blocks(
        self, inputs: list[Tensor], blocks: list[list[Tensor]], biases: list[Tensor | None]
    ) -> list[Tensor]:
        """``[sum_j op(inputs[j], blocks[i][j]) + biases[i] for i]`` in one product.

        The inputs are stacked on the channels and the weights into one ``(out blocks x in
        blocks)`` layer: for the first layer (few input channels, inputs of both signs) one call
        instead of one per block.
        """
        if self.is_conv and self.groups != 1:
            return [
                sum(self.forward(x, w, None) for x, w in zip(inputs, row, strict=True))
                + (0 if b is None else b.reshape(-1, *[1] * self.dims))
                for row, b in zip(blocks, biases, strict=True)
            ]
        weight = block_weight(blocks)
        dim = 1 if self.is_conv else -1
        n_out = weight.shape[0] // len(blocks)
        bias = None
        if any(b is not None for b in biases):
            bias = torch.cat([weight.new_zeros(n_out) if b is None else b for b in biases])
        out = self.forward(torch.cat(inputs, dim), weight, bias)
        return list(out.chunk(len(blocks), dim))

    def transpose(self, grad: Tensor, weight: Tensor, like: Tensor) -> Tensor:
        """Apply the transposed layer ``W^T`` to ``grad`` (shaped like the output).

        ``like`` is the layer's real input: oneDNN picks a much faster kernel for a real tensor
        than for a broadcast placeholder of the same shape.
        """
        if not self.is_conv:
            return grad @ weight  # (B, ..., out) -> (B, ..., in)
        if self._fold and use_fold(weight, grad):  # a first layer (fold.py)
            size = like.shape[-2:]
            return fold_transpose(grad, weight, size, self.stride, self.padding, self.dilation)
        return torch.ops.aten.convolution_backward(
            grad,
            like,
            weight,
            None,
            list(self.stride),
            list(self.padding),
            list(self.dilation),
            False,
            [0] * self.dims,
            self.groups,
            [True, False, False],
        )[0]

    def transpose_blocks(
        self, grads: list[Tensor], blocks: list[list[Tensor]], like: Tensor
    ) -> list[Tensor]:
        """``[sum_i blocks[i][j]^T grads[i] for j]`` in one transposed product.

        The weights are stacked into one ``(out blocks x in blocks)`` layer, which is much faster
        than one call per block when the input has few channels (a first layer).
        """
        n_in = len(blocks[0])
        if self.is_conv and self.groups != 1:
            return [
                sum(self.transpose(g, row[j], like) for g, row in zip(grads, blocks, strict=True))
                for j in range(n_in)
            ]
        weight = block_weight(blocks)
        dim = 1 if self.is_conv else -1
        grad = torch.cat(grads, dim) if len(grads) > 1 else grads[0]
        shape = list(like.shape)
        shape[dim] *= n_in
        stacked = self.transpose(grad, weight, like.new_empty(shape))
        return list(stacked.chunk(n_in, dim))


class Kernel:
    """A rule's fast form for one rule instance (built by :func:`prune.lrp.fast.base_for`).

    The rule's parameters are copied onto the kernel, so the arithmetic reads ``self.epsilon``
    as the rule does. Subclasses implement :meth:`apply` for layers; kernels of rules for
    functional ops implement :meth:`op`.
    """

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.__dict__.update(vars(rule))

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:  # pragma: no cover
        """Forward ``x`` through ``module`` with the rule's backward."""
        raise NotImplementedError

    def op(
        self, name: str, args: tuple, kwargs: dict, inplace: bool, run: RunState
    ) -> Tensor | None:
        """The functional op ``name`` (``"add"``, ...) on ``args`` and ``kwargs`` with the rule's
        backward, or None where this kernel has no fast form of that call (the rule's reference
        form runs then)."""
        return None


class _RuleFunction(torch.autograd.Function):
    """One autograd node per layer: ``rule.forward_impl`` in forward, ``backward_impl`` in backward.

    State lives on ``ctx`` as plain attributes (never the node's own output, which would make a
    reference cycle), so it is freed with the graph.
    """

    @staticmethod
    def forward(ctx, x, rule, module, op, weight, bias, root, passes):
        out, saved = rule.forward_impl(op, x, weight, bias, root)
        if rule.output_scale:  # handed to an OutputScale node (LinearKernel.apply)
            ctx.output_scale, saved = saved[0], (None, *saved[1:])
        ctx.rule, ctx.op, ctx.saved, ctx.root = rule, op, saved, root
        ctx.x = x  # the input (no reference cycle); alive anyway as the previous layer's output
        ctx.passes_left = passes
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_in = ctx.rule.backward_impl(ctx.op, ctx.saved, grad, ctx.root, ctx.x)
        ctx.passes_left -= 1
        if ctx.passes_left <= 0:  # free early; a retained graph keeps it for the next pass
            del ctx.saved, ctx.x
        return grad_in, None, None, None, None, None, None, None


class OutputScale(torch.autograd.Function):
    """Identity forward; backward ``grad * scale``: the output scale of a rule node, split off.

    A rule's backward starts by scaling the incoming gradient (``z / stab(den)``) and then
    applies transposed weights. With the scale in a node of its own, a following ReLU bypasses
    this node and keeps the scale only where its output is positive (:mod:`prune.lrp.fast.flow`),
    instead of the scale and its own output both.
    """

    @staticmethod
    def forward(ctx, h, scale):
        ctx.scale, ctx.h, ctx.fusable = scale, h, True
        return h.detach()  # shares h's storage; not a view, so in-place consumers are fine

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


OUTPUT_SCALE = OutputScale._backward_cls


class LinearKernel(Kernel):
    """Base of the kernels of linear and convolutional layers.

    ``forward_impl(op, x, w, b, root) -> (z, saved)`` computes the real output ``z`` and whatever
    the backward needs; ``backward_impl(op, saved, g, root, shape)`` returns the gradient-form
    input relevance, or the relevance itself when ``root`` (the layer reads the model input).

    With ``output_scale`` (the default), ``saved[0]`` is the scale of the incoming gradient
    (``z / stab(den)``): it goes into an :class:`OutputScale` node, and ``backward_impl`` gets
    the gradient already scaled (and ``saved[0] = None``).
    """

    output_scale = True
    #: Whether :meth:`fast` always applies (never returns None): the engine then calls it
    #: directly where no functional mode is active (a traced program; :mod:`prune.lrp.fast.direct`).
    always_fast = False

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Run the layer with this rule's backward."""
        if not isinstance(module, LINEAR_TYPES):
            raise TypeError(
                f"{type(self.rule).__name__} applies to Linear/Conv layers, got {module}"
            )
        weight, bias = run.weight_bias(module)
        op = LinearOp(module)
        if not x.requires_grad:
            return op.forward(x, weight, bias)
        root = run.is_root(x)
        out = self.fast(op, x, weight, bias, run)
        if out is not None:  # gradient form: relevance = input * gradient
            run.root_other_used |= root
            return out
        run.root_rule_used |= root
        flag = self.root_flag(x, root, run)
        h = _RuleFunction.apply(x, self, module, op, weight, bias, flag, run.passes)
        if not self.output_scale:
            return h
        scale, h.grad_fn.output_scale = h.grad_fn.output_scale, None
        return OutputScale.apply(h, scale)

    def fast(self, op, x, weight, bias, run):
        """The rule through native autograd (see :mod:`prune.lrp.fast.flow`), or ``None``."""
        return None

    def root_flag(self, x: Tensor, root: bool, run: RunState) -> object:
        """What ``forward_impl`` and ``backward_impl`` get as ``root``: whether the layer reads
        the model input. A kernel may say more there (absLRP: whether its input's rescale
        changes anything, :class:`prune.lrp.fast.abslrp.Rescale`)."""
        return root

    def forward_impl(self, op, x, weight, bias, root):  # pragma: no cover
        raise NotImplementedError

    def backward_impl(self, op, saved, grad, root, shape):  # pragma: no cover
        raise NotImplementedError
