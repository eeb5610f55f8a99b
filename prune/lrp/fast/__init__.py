"""Fast forms of the LRP rules, kept apart from the rules' maths.

Each kernel (registered with :func:`~prune.lrp.fast.registry.kernel` for one rule type) gives
the relevance of its rule's reference form with less work: native autograd for the linear part,
rescales owed to the next consumer and fused into a ReLU (:mod:`.flow`), layers whose modified
weights are rebuilt in the backward (:mod:`.modified`), a first convolution's transposed product
by ``F.fold`` (:mod:`.fold`), broadcast average pools (:mod:`.pooling`), max-pools that keep
only their indices (:mod:`.max_pool`), and a traced program of the model's forward
(:mod:`.program`). A rule without a kernel runs its reference form.
"""

from prune.lrp.fast import (  # noqa: F401  (registers the kernels)
    abslrp,
    abslrp_transformer,
    attention,
    free,
    gate,
    input,
    linear,
    transformer,
)
from prune.lrp.fast.registry import KERNELS, kernel, kernel_for

__all__ = ["KERNELS", "kernel", "kernel_for"]
