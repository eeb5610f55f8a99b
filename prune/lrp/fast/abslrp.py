"""Kernels of the absLRP rules (:mod:`prune.lrp.rules.abslrp`).

In the gradient form of :mod:`prune.lrp.fast.base` the incoming ``R / |y|`` is
``sign(y) * g``: the sign of each output is all a kernel keeps of it, in the output's dtype (an
int8 sign would take a quarter of the memory, but on the CPU a product with it casts it to a
temporary copy first and costs about twice a float product).

Each node rescales the relevance of its inputs to unit L1 per sample, except where that changes
nothing: an input that a traced graph reads once and that comes from another absLRP node, whose
own rescales undo any factor per sample (:meth:`prune.lrp.state.RunState.scale_free`). The node
then returns that input's gradient as it is (:attr:`Rescale.FREE`).
"""

from __future__ import annotations

import enum

import torch
from torch import Tensor, nn

from prune.lrp.canonizers import batchnorm_affine
from prune.lrp.fast.base import Kernel, LinearKernel
from prune.lrp.fast.pooling import avg_pool
from prune.lrp.fast.registry import kernel
from prune.lrp.rules.abslrp import AbsBatchNorm, AbsLinear, AbsNorm, AbsSum
from prune.lrp.rules.base import nonnegative
from prune.lrp.state import RunState


class Rescale(enum.Enum):
    """What an absLRP node returns for one input ``x`` with gradient ``g``."""

    #: the relevance ``x * g`` rescaled to unit L1 per sample (the layer reads the model input)
    ROOT = "root"
    #: the gradient, rescaled so that ``x * g`` has unit L1 per sample
    UNIT = "unit"
    #: the gradient as it is: the rescale would change nothing (RunState.scale_free)
    FREE = "free"


def rescale_of(x: Tensor, run: RunState, root: bool = False) -> Rescale:
    """How an absLRP node returns the relevance of its input ``x``."""
    if root:
        return Rescale.ROOT
    return Rescale.FREE if run.scale_free(x) else Rescale.UNIT


def unit_input(x: Tensor, grad_in: Tensor, how: Rescale) -> Tensor:
    """The input relevance of an absLRP node at unit L1 per sample, as ``how`` says
    (``grad_in``, the node's own result, may be divided in place). Not ``flow.rescaled``,
    the epsilon rule's rescale of a tensor's gradient."""
    if how is Rescale.FREE:
        return grad_in
    relevance = x * grad_in
    magnitude = relevance.abs() if how is Rescale.ROOT else relevance.abs_()
    # abs().sum(), not linalg.vector_norm(ord=1): the reduction is much slower on the CPU; over
    # the axes themselves, not flatten(1), which copies a permuted tensor (q, k, v); a (B,)
    # tensor holds one value per sample already
    if magnitude.dim() > 1:
        magnitude = magnitude.sum(tuple(range(1, magnitude.dim())), keepdim=True)
    norm = magnitude.clamp_min_(1e-30)
    return relevance.div_(norm) if how is Rescale.ROOT else grad_in.div_(norm)


#: weight elements per temporary modified copy in a dense layer's backward (16 MiB in float32)
_CHUNK = 1 << 22


def _twin_product(op, c: Tensor, weight: Tensor, like: Tensor, nonneg: bool) -> Tensor:
    """``W_twin^T c`` with ``W_twin = 2 W+`` (nonnegative inputs) or ``|W|``.

    The modified weight is built in the backward pass, never stored with the graph; a large
    dense layer's is built a slice of output units at a time, so no full copy of it is held
    (torchvision's VGG classifier has 100 M weights: a copy is 400 MiB).
    """

    def twin(w: Tensor) -> Tensor:
        return 2 * w.clamp(min=0) if nonneg else w.abs()

    if op.is_conv or weight.numel() <= _CHUNK:
        return op.transpose(c, twin(weight), like)
    rows = max(1, _CHUNK // weight.shape[1])
    out = c[..., :rows] @ twin(weight[:rows])
    for i in range(rows, weight.shape[0], rows):
        out.add_(c[..., i : i + rows] @ twin(weight[i : i + rows]))
    return out


@kernel(AbsLinear)
class AbsLinearKernel(LinearKernel):
    """absLRP on a linear or conv layer: one custom node, the twin weights built in the backward.

    The node applies its output's sign to the incoming gradient itself, with no output-scale
    node split off: absLRP has no ReLU rule to fuse with one (a ReLU takes the pass rule, its
    plain gradient), so that node would only add one to every pass.
    """

    output_scale = False

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Run the layer with this rule's backward."""
        return _absorbs(run, super().apply(module, x, run))

    def root_flag(self, x: Tensor, root: bool, run: RunState) -> Rescale:
        """How the node returns its input relevance (:class:`Rescale`)."""
        return rescale_of(x, run, root)

    def forward_impl(self, op, x, weight, bias, root):
        z = op.forward(x, weight, bias)
        return z, (z.sign(), weight, x, nonnegative(x))

    def backward_impl(self, op, saved, grad, root, like):
        sign_z, weight, x, nonneg = saved
        c = grad * sign_z  # R / |y|
        twin = _twin_product(op, c, weight, like, nonneg)
        # W + sign(x)|W|: = 2 W+ where x > 0 (nonnegative inputs), else both products
        grad_in = twin if nonneg else op.transpose(c, weight, like).addcmul_(x.sign(), twin)
        return unit_input(x, grad_in, root)


class _AbsDiagonal(torch.autograd.Function):
    """absLRP on an elementwise affine map ``y = x * scale + shift`` (eval-mode BatchNorm)."""

    @staticmethod
    def forward(ctx, x, scale, shift, how):
        y = x * scale + shift
        slope = torch.addcmul(scale, x.sign(), scale.abs()).mul_(y.sign())
        ctx.x, ctx.slope, ctx.how = x, slope, how
        return y

    @staticmethod
    def backward(ctx, grad):
        return unit_input(ctx.x, grad * ctx.slope, ctx.how), None, None, None


@kernel(AbsBatchNorm)
class AbsBatchNormKernel(Kernel):
    """absLRP on an eval-mode BatchNorm: one elementwise custom node."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward through the BatchNorm with the absolute rule's backward."""
        if module.running_var is None:
            raise NotImplementedError(f"absLRP needs running statistics in BatchNorm {module}")
        scale, shift = batchnorm_affine(module, x)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        how = rescale_of(x, run, run.is_root(x))
        return _absorbs(run, _AbsDiagonal.apply(x, scale.reshape(shape), shift.reshape(shape), how))


class _AbsPool(torch.autograd.Function):
    """absLRP on a parameter-free linear map with nonnegative coefficients (average pooling)."""

    @staticmethod
    def forward(ctx, x, fn, how):
        y = fn(x)
        ctx.x, ctx.fn, ctx.sign_y, ctx.how = x, fn, y.sign(), how
        return y

    @staticmethod
    def backward(ctx, grad):
        with torch.enable_grad():
            x = ctx.x.detach().requires_grad_()
            (jt,) = torch.autograd.grad(ctx.fn(x), x, grad * ctx.sign_y)
        grad_in = jt * (1 + ctx.x.sign())  # J + sign(x)|J| with J >= 0
        return unit_input(ctx.x, grad_in, ctx.how), None, None


@kernel(AbsNorm)
class AbsNormKernel(Kernel):
    """absLRP on an average pool: one custom node with the pool's own gradient."""

    def apply(self, module: nn.Module, x: Tensor, run: RunState) -> Tensor:
        """Forward through the pool with the absolute rule's backward."""
        how = rescale_of(x, run, run.is_root(x))
        return _absorbs(run, _AbsPool.apply(x, lambda t: avg_pool(module, t), how))


class _AbsSumFunction(torch.autograd.Function):
    """absLRP on ``a + b``: ``R_a ~ 2 max(a, 0) R / |a + b|``, each branch rescaled on its own."""

    @staticmethod
    def forward(ctx, a, b, inplace, hows):
        ctx.a, ctx.b = a.detach().clone() if inplace else a, b
        z = a.add_(b) if inplace else a + b
        if inplace:
            ctx.mark_dirty(a)
        sign_z = z.sign()
        ctx.slopes = [  # sign(z) (1 + sign(t))
            torch.addcmul(sign_z, sign_z, t.sign()) if isinstance(t, Tensor) else None
            for t in (ctx.a, ctx.b)
        ]
        ctx.hows = hows
        return z

    @staticmethod
    def backward(ctx, grad):
        grads = []
        for t, slope, how in zip((ctx.a, ctx.b), ctx.slopes, ctx.hows, strict=True):
            if slope is None:
                grads.append(None)
                continue
            grads.append(unit_input(t, (grad * slope).sum_to_size(t.shape), how))
        return grads[0], grads[1], None, None


@kernel(AbsSum)
class AbsSumKernel(Kernel):
    """absLRP on a sum: one custom node rescaling each branch on its own."""

    def op(
        self, name: str, args: tuple, kwargs: dict, inplace: bool, run: RunState
    ) -> Tensor | None:
        """``a + b`` (or ``a += b``) with the absolute rule's backward; None for other ops."""
        if name != "add" or len(args) != 2 or kwargs:
            return None
        hows = tuple(rescale_of(t, run) if isinstance(t, Tensor) else None for t in args)
        return _absorbs(run, _AbsSumFunction.apply(*args, inplace, hows))


def _absorbs(run: RunState, out: Tensor) -> Tensor:
    """``out``, told to the run as the output of an absLRP node (RunState.absorbs)."""
    if out.requires_grad:
        run.absorbs(out)
    return out
