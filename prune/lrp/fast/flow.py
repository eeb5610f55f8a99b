"""Fast relevance flow: native autograd for the linear part, the rule's rescale fused into a ReLU.

For LRP-epsilon (and the z-rule of pools and sums) the backward pass is the ordinary gradient with
the incoming gradient scaled by ``z / stab(z)`` at the layer output. The layer therefore runs
natively (autograd does the transposed product, no custom conv backward) and its output is
*pending*: the scale is still owed. A ReLU that consumes a pending tensor folds the scale into
its own backward, reading only its output ``y`` (``z / (z + eps) = y / (y + eps)`` where
``y > 0``, and the ReLU zeroes the rest), so no pre-activation is kept alive. Any other consumer
first *materialises* the scale as a node of its own.

Rules that modify the parameters (z+, gamma, alpha-beta) on a nonnegative input run the modified
layer ``h = W' x + b'`` (:mod:`prune.lrp.fast.modified`) and wrap the real output ``z`` in
:class:`Substitute`, whose backward sends ``g * z / stab(h)`` into ``h`` (and hence through
``W'^T``). A following ReLU again bypasses that node and saves only the scale on the positive
outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prune.lrp.fast.base import OUTPUT_SCALE
from prune.lrp.fast.modified import batch_slices
from prune.lrp.rules.base import ratio
from prune.lrp.state import RunState


def self_ratio(z: Tensor, epsilon: float, factors: int = 1) -> Tensor:
    """``z / stab(factors * z)``, the value of ``ratio(z, factors * z, epsilon)`` in three or four
    elementwise ops instead of seven (only the sign of a zero result may differ)."""
    z = z.detach()
    if epsilon == 0:
        return ratio(z, factors * z, 0.0)
    den = torch.copysign(z.new_full((), epsilon), z)
    den = den.add_(z) if factors == 1 else den.add_(z, alpha=factors)
    return torch.div(z, den, out=den)


def scaled_grad(grad: Tensor, z: Tensor, epsilon: float, factors: int = 1) -> Tensor:
    """``grad * z / stab(factors * z)`` from ``z`` itself, in three elementwise ops.

    With ``n = factors`` and ``d = eps / n``, ``z / (n z + eps sign(z)) = |z| / (n (|z| + d))``,
    so the product is ``(grad - d * grad / (|z| + d)) / n``: one fused ``addcdiv`` after
    ``|z| + d``, instead of building the ratio and multiplying by it (equal up to float rounding).
    """
    if epsilon == 0:
        return grad * ratio(z, factors * z, 0.0)
    shift = epsilon / factors
    den = z.abs().add_(shift)
    out = torch.addcdiv(grad, grad, den, value=-shift, out=den)
    return out if factors == 1 else out.div_(factors)


class _EpsScale(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``z / stab(factors * z)``.

    The forward keeps ``z`` and computes nothing; the backward computes the product from it
    (:func:`scaled_grad`). Should ``z`` be about to change in place before the backward, the
    run computes the scale from it first (:meth:`RunState.changing`); a change nobody announced
    is an error, never a wrong relevance.
    """

    @staticmethod
    def forward(ctx, z, epsilon, factors, run):
        ctx.epsilon, ctx.factors, ctx.scale = epsilon, factors, None
        ctx.z, ctx.version = z.detach(), z._version  # detach() shares the version counter
        ctx.passes_left = 1 if run is None else run.passes
        if run is not None:
            run.watch(z, lambda: _EpsScale.fix(ctx))
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        if ctx.scale is not None:
            out = grad * ctx.scale
        else:
            if ctx.z._version != ctx.version:
                raise RuntimeError(
                    "LRP: a tensor whose epsilon rescale is owed was changed in place before the "
                    "backward pass; write that operation out of place"
                )
            out = scaled_grad(grad, ctx.z, ctx.epsilon, ctx.factors)
        ctx.passes_left -= 1
        if ctx.passes_left <= 0:  # free early; a retained graph keeps it for the next pass
            ctx.z = ctx.scale = None
        return out, None, None, None

    @staticmethod
    def fix(ctx) -> None:
        """Compute the scale now, from ``z`` as it is (it is about to change in place)."""
        if ctx.scale is None and ctx.z is not None:
            ctx.scale = self_ratio(ctx.z, ctx.epsilon, ctx.factors)


def rescaled(z: Tensor, factors: int, epsilon: float, run: RunState | None = None) -> Tensor:
    """``z`` whose gradient is scaled by ``z / stab(factors * z)`` on the way back (the epsilon
    rule's rescale; the uniform rule's for a product of ``factors`` factors). ``run`` (the
    pass's state) is told, so that an in-place change of ``z`` later in the forward is safe."""
    return _EpsScale.apply(z, epsilon, factors, run)


class _EpsScaleInplace(torch.autograd.Function):
    """As :class:`_EpsScale`, but rebinds the tensor itself (before an in-place op on it): the
    scale is computed in the forward, from ``z`` as it is before the change."""

    @staticmethod
    def forward(ctx, z, epsilon, factors):
        ctx.scale = self_ratio(z, epsilon, factors)
        ctx.mark_dirty(z)
        return z

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None, None


class _EpsReLU(torch.autograd.Function):
    """``relu(z)`` whose backward is ``g * y / (y + eps)``: epsilon rescale and ReLU in one."""

    @staticmethod
    def forward(ctx, z, epsilon):
        y = z.clamp_min(0)
        ctx.epsilon = epsilon
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        den = y + ctx.epsilon
        return torch.div(y, den, out=den).mul_(grad), None


class Spec:
    """What a :class:`Substitute` needs: how to get ``z`` and how to scale the gradient into ``h``.

    Subclasses (one per rule) implement :meth:`value`, :meth:`backward` (any consumer) and
    :meth:`relu_scale` (consumer is a ReLU; only positions with ``y > 0`` matter).
    """

    def value(self, h: Tensor, x: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def backward(self, z: Tensor, h: Tensor, x: Tensor, grad: Tensor):  # pragma: no cover
        raise NotImplementedError

    def relu_scale(self, y: Tensor, h: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def relu_backward(self, scale: Tensor, grad: Tensor, inplace: bool = False) -> Tensor:
        """``grad * scale``; with ``inplace`` into ``scale`` (the last backward pass)."""
        return scale.mul_(grad) if inplace else grad * scale

    #: Whether a ReLU fused with this node may record the relevance of a recorded output
    #: (``y * grad(y)``): only where the fused scale gives the same values as the node's.
    records_fused = True

    #: ``(rows=slice(None)) -> h[rows]`` rebuilding (rows of) the modified output from the layer
    #: input, or None. Set where that is cheap (a first layer on pixels); a fused ReLU then
    #: keeps nothing from the forward to the backward and rebuilds its scale with
    #: :meth:`relu_scale_rebuilt`.
    recompute_h = None

    def relu_scale_from(self, h: Tensor) -> Tensor:
        """:meth:`relu_scale` of a rebuilt, private ``h`` (may be computed in ``h`` itself)."""
        return self.relu_scale(self.value(h, None).clamp_min_(0), h)

    def relu_scale_rebuilt(self, shape: torch.Size, like: Tensor) -> Tensor:
        """The ReLU scale of the whole layer (``h``'s ``shape``; device and dtype of ``like``),
        rebuilt by ``recompute_h`` in slices of the batch: only a slice of ``h`` exists at a
        time."""
        scale = None
        nbytes = shape.numel() * like.element_size()
        for rows in batch_slices(shape[0], like.device, nbytes):
            part = self.relu_scale_from(self.recompute_h(rows))
            if scale is None:
                scale = part.new_empty(shape)
            scale[rows] = part
        return scale


def positive_ratio(y: Tensor, den: Tensor, epsilon: float) -> Tensor:
    """``y / stab(den)`` where ``y > 0`` (there ``den >= y > 0``), 0 elsewhere."""
    if epsilon == 0:
        return ratio(y, den, 0.0)
    d = den.clamp_min(0).add_(epsilon)
    return torch.div(y, d, out=d)


class Substitute(torch.autograd.Function):
    """Forward: the real output ``z = spec.value(h, x)``; backward: the rule's gradient into ``h``.

    ``h`` is the output of the modified layer, computed with autograd, so the transposed product
    with the modified weights is autograd's own. ``x`` only receives a gradient where the rule
    needs a second modified product (gamma's negative outputs).
    """

    @staticmethod
    def forward(ctx, h, x, spec):
        z = spec.value(h, x)
        ctx.spec, ctx.h, ctx.x, ctx.fusable, ctx.z_copy = spec, h, x, True, None
        ctx.records_fused = spec.records_fused
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx, grad):
        z = ctx.z_copy if ctx.z_copy is not None else ctx.saved_tensors[0]
        grad_h, grad_x = ctx.spec.backward(z, ctx.h, ctx.x, grad)
        del ctx.h, ctx.x
        return grad_h, grad_x, None


SUBSTITUTE = Substitute._backward_cls


class _SubstituteReLU(torch.autograd.Function):
    """``relu(z)`` of a :class:`Substitute` output ``z``; the gradient goes straight into ``h``."""

    @staticmethod
    def forward(ctx, h, z, spec, passes):
        y = z.clamp_min(0)
        ctx.spec, ctx.passes_left = spec, passes
        ctx.recompute = spec.recompute_h is not None and passes == 1
        if ctx.recompute:
            ctx.shape = h.shape
        else:
            ctx.save_for_backward(spec.relu_scale(y, h))
        return y

    @staticmethod
    def backward(ctx, grad):
        if ctx.recompute:
            with torch.no_grad():
                scale = ctx.spec.relu_scale_rebuilt(ctx.shape, grad)
        else:
            (scale,) = ctx.saved_tensors
        ctx.passes_left -= 1
        # the last pass multiplies into the scale: no second tensor of the layer's size at the
        # backward's peak, which is at the first (largest) layer
        grad_h = ctx.spec.relu_backward(scale, grad, inplace=ctx.passes_left <= 0)
        return grad_h, None, None, None


class _ScaledReLU(torch.autograd.Function):
    """``relu(z)`` of an :class:`~prune.lrp.fast.base.OutputScale` output ``z``: the gradient goes
    straight into the rule node, scaled where ``y > 0`` (the ReLU zeroes the rest)."""

    @staticmethod
    def forward(ctx, h, z, scale, passes):
        y = z.clamp_min(0)
        ctx.scale = y.sign().mul_(scale)  # 1 where y > 0, else 0 (y >= 0)
        ctx.passes_left = passes
        return y

    @staticmethod
    def backward(ctx, grad):
        ctx.passes_left -= 1
        if ctx.passes_left <= 0:  # the last pass: into the scale (see _SubstituteReLU)
            return ctx.scale.mul_(grad), None, None, None
        return grad * ctx.scale, None, None, None


def fused_relu(x: Tensor, run: RunState) -> Tensor | None:
    """``relu(x)`` with the rescale owed by ``x`` folded in, or ``None`` when nothing is owed."""
    run.inside += 1
    try:
        return _fused_relu(x, run)
    finally:
        run.inside -= 1


def _fused_relu(x: Tensor, run: RunState) -> Tensor | None:
    epsilon = run.pending_epsilon(x)
    if epsilon is not None:
        y = torch.relu(x) if epsilon == 0 else _EpsReLU.apply(x, epsilon)
        run.consumed(x, y)  # a recorded x: its relevance through this ReLU is y * grad(y)
        return y
    node = x.grad_fn
    if isinstance(node, SUBSTITUTE) and node.fusable:
        y = _SubstituteReLU.apply(node.h, x.detach(), node.spec, run.passes)
    elif isinstance(node, OUTPUT_SCALE) and node.fusable:
        y = _ScaledReLU.apply(node.h, x.detach(), node.scale, run.passes)
    else:
        return None
    run.consumed(x, y)  # a recorded x: the share through this ReLU is y * grad(y)
    return y


def materialize(x: Tensor, run: RunState, inplace: bool = False) -> Tensor:
    """``x`` with any rescale it owes applied as a node of its own (before a non-ReLU consumer).

    With ``inplace`` the same tensor object is returned (an in-place op is about to modify it).
    """
    if not inplace and id(x) not in run.pending:  # the common case, once per layer: no call
        return x
    run.inside += 1
    try:
        return _materialize(x, run, inplace)
    finally:
        run.inside -= 1


def _materialize(x: Tensor, run: RunState, inplace: bool) -> Tensor:
    epsilon = run.pending_epsilon(x)
    if epsilon is not None:
        if not inplace:
            z = run.materialized_of(x)  # one node for every consumer of x: their gradients
            if z is None:  # add up at z before the one rescale
                z = _EpsScale.apply(x, epsilon, 1, run)
                run.keep_materialized(x, z)
                run.consumed(x, z, alias=x)  # a recorded x: its relevance is z * grad(z)
            return z
        run.pending.pop(id(x), None)
        run.materialized.pop(id(x), None)
        value = x.detach().clone() if run.is_deferred(x) else None  # x is about to change
        z = _EpsScaleInplace.apply(x, epsilon, 1)
        run.consumed(z, z, value)
        return z
    node = x.grad_fn
    if inplace and isinstance(node, SUBSTITUTE) and node.z_copy is None:
        node.z_copy = x.detach().clone()  # rare: keep z for the backward before it changes
    return x


def materialize_all(args, run: RunState, inplace_first: bool = False):
    """``args`` (nested lists/tuples) with every owed rescale materialised."""
    out = []
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            out.append(materialize(a, run, inplace=inplace_first and i == 0))
        elif isinstance(a, list | tuple):
            out.append(type(a)(materialize_all(a, run)))
        else:
            out.append(a)
    return tuple(out) if isinstance(args, tuple) else out


def is_owing(x: Tensor, run: RunState) -> bool:
    """Whether ``x`` still owes a rescale that a consumer must apply or fuse."""
    return run.pending_epsilon(x) is not None or (
        isinstance(x.grad_fn, SUBSTITUTE) and x.grad_fn.fusable
    )
