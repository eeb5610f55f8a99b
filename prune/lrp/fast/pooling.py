"""Average pooling as a replication where every window holds one input element.

An adaptive average pool whose output size is a multiple of its input size in every spatial
dimension averages windows of a single element: it copies each input element to a block of
outputs (torchvision's VGG pools its 1x1 map at 32x32 inputs to 7x7 for the classifier). The
native kernels still loop over windows; at batch 128 VGG11's pool took 25 ms forward and 27 ms
backward on two CPU threads. As a broadcast it is a copy, and its gradient a sum over the
copies: the same values (an average of one element is that element), the same relevance.
"""

from __future__ import annotations

from torch import Tensor, nn

#: Spatial dimensions of each adaptive average pool (exact types: a subclass may pool otherwise).
SPATIAL_DIMS: dict[type[nn.Module], int] = {
    nn.AdaptiveAvgPool1d: 1,
    nn.AdaptiveAvgPool2d: 2,
    nn.AdaptiveAvgPool3d: 3,
}


def replication_factors(module: nn.Module, x: Tensor) -> tuple[int, ...] | None:
    """Per spatial dimension, how many outputs copy each input element, or None where the pool
    averages more than one element somewhere (or copies nothing: the identity)."""
    d = SPATIAL_DIMS.get(type(module))
    if d is None:
        return None
    size = module.output_size
    out = (size,) * d if isinstance(size, int) else tuple(size)
    sizes = tuple(x.shape[-d:])
    out = tuple(s if o is None else o for o, s in zip(out, sizes, strict=True))
    if any(s == 0 or o % s for o, s in zip(out, sizes, strict=True)):
        return None
    factors = tuple(o // s for o, s in zip(out, sizes, strict=True))
    return factors if any(f > 1 for f in factors) else None


def avg_pool(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` for an average pool, as a broadcast copy where every window is one element
    (:func:`replication_factors`), else by the module's own forward."""
    factors = replication_factors(module, x)
    if factors is None:
        return type(module).forward(module, x)
    d = len(factors)
    lead, sizes = x.shape[:-d], x.shape[-d:]
    spread = [n for s in sizes for n in (s, 1)]
    blocks = [n for s, f in zip(sizes, factors, strict=True) for n in (s, f)]
    out = [s * f for s, f in zip(sizes, factors, strict=True)]
    return x.reshape(*lead, *spread).expand(*lead, *blocks).reshape(*lead, *out)
