"""FLOP formulas that ``torch.utils.flop_counter`` lacks, registered when this module is imported.

PyTorch counts ``scaled_dot_product_attention`` on the GPU kernels only; on the CPU the op runs
as ``_scaled_dot_product_flash_attention_for_cpu``, which the counter would skip, so a model
with fused attention would look cheaper than the same model with its products written out.
"""

from __future__ import annotations

import torch
from torch.utils import flop_counter

_CPU_ATTENTION = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """``q @ k^T`` and ``A @ v``: the same count as the GPU kernels' formula."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


if _CPU_ATTENTION is not None and _CPU_ATTENTION not in flop_counter.flop_registry:
    flop_counter.register_flop_formula(_CPU_ATTENTION)(_cpu_attention_flops)
