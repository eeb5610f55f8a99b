"""Compute cost of a model, measured: FLOPs, parameters, state-dict bytes, latency.

FLOPs convention: FLOPs = 2 x MACs of convolutions and matrix products, as counted by
``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one sample. Bias
additions, activations, pooling and BatchNorm are not counted.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _example(model: nn.Module, in_shape: Sequence[int], batch: int) -> torch.Tensor:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None else torch.float32
    return torch.randn(batch, *in_shape, device=device, dtype=dtype)


@torch.no_grad()
def count_flops(model: nn.Module, in_shape: Sequence[int]) -> int:
    """FLOPs (2 x MACs) of one forward pass for one sample of shape ``in_shape``."""
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(_example(model, in_shape, 1))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``, i.e. the size of the weights on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def latency(
    model: nn.Module,
    in_shape: Sequence[int],
    batch: int,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
) -> float:
    """Median wall time in seconds of one forward pass at ``batch`` on the model's device.

    On CPU the thread count is fixed to ``threads`` (default: the current setting) for the
    measurement; on CUDA every pass is synchronised before the clock is read.
    """
    was_training = model.training
    model.eval()
    x = _example(model, in_shape, batch)
    cuda = x.device.type == "cuda"
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    times = []
    try:
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(x.device)
            start = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    return statistics.median(times)


def measure(
    model: nn.Module,
    in_shape: Sequence[int],
    latency_batches: Sequence[int] = (1, 256),
    repeats: int = 30,
    threads: int | None = None,
    devices: Sequence[str] | None = None,
) -> dict[str, float]:
    """All cost figures in one dict with ``cost/...`` keys (latency in milliseconds).

    Latency is measured on each of ``devices`` (``cpu``, ``cuda``; default: the model's own
    device), on a copy of the model where it lives elsewhere: ``cost/latency_ms_b{batch}_{dev}``.
    """
    own = next(model.parameters()).device.type
    out: dict[str, float] = {
        "cost/flops": count_flops(model, in_shape),
        "cost/params": count_params(model),
        "cost/state_dict_bytes": state_dict_bytes(model),
    }
    devices = list(devices or [own])
    for device in devices:  # all checked before anything is timed
        if device not in ("cpu", "cuda"):
            raise ValueError(f"latency device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("latency on device 'cuda' asked for, but no GPU is available")
    for device in devices:
        net = model if device == own else copy.deepcopy(model).to(device)
        for b in latency_batches:
            out[f"cost/latency_ms_b{b}_{device}"] = 1e3 * latency(
                net, in_shape, b, repeats, threads=threads
            )
    return out
