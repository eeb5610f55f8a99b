"""Compute cost of a model, measured: FLOPs, parameters, state-dict bytes, latency.

FLOPs convention: FLOPs = 2 x MACs of convolutions and matrix products, as counted by
``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one sample. Bias
additions, activations, pooling and BatchNorm are not counted.

Latency: the median of timed repeats at a fixed intra-op thread count, with its interquartile
range and a flag when that range is too wide, relative to the median, to trust the figure.
"""

from __future__ import annotations

import copy
import io
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import prune.evaluation.flops  # noqa: F401  (counts fused attention on the CPU too)
from prune.checks import Check, int_at_least, int_list
from prune.errors import ConfigError

#: IQR / median above which a latency is flagged noisy (``cost/latency_ms_..._noisy``). On a
#: quiet machine the quartiles of a forward pass lie within a few percent of each other; a
#: spread over a quarter of the median means other work (jobs on the same cores, frequency
#: scaling, swapping) moved the timings, by as much as the differences between pruning rounds
#: that the figure is read for, so its median cannot be compared with another's.
NOISY_IQR = 0.25


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
def _time_once(model: nn.Module, x: torch.Tensor) -> float:
    """Wall time in seconds of one forward pass of ``x`` (synchronised on CUDA)."""
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    model(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def default_threads() -> int:
    """Intra-op threads latency is timed with unless told: the cores this process may run on,
    capped at torch's own count (by default the machine's physical cores, or OMP_NUM_THREADS),
    so hyperthreads are not counted twice and a CPU limit set by the user is kept."""
    try:
        available = len(os.sched_getaffinity(0))  # respects taskset, cgroups' cpusets, Slurm
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    return max(1, min(available, torch.get_num_threads()))


def _check_threads(threads: Any) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"latency threads must be an integer >= 1 or None, got {threads!r}")
    return threads


@torch.no_grad()
def timings(
    model: nn.Module,
    in_shape: Sequence[int],
    batch: int,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
) -> list[float]:
    """Wall times in seconds of ``repeats`` forward passes at ``batch`` on the model's device,
    after ``warmup`` untimed ones.

    The intra-op thread count is fixed to ``threads`` (default: :func:`default_threads`) while
    timing and restored afterwards; on CUDA every pass is synchronised before the clock is read.
    """
    threads = _check_threads(threads)
    was_training = model.training
    model.eval()
    x = _example(model, in_shape, batch)
    old_threads = torch.get_num_threads()
    times = []
    try:
        torch.set_num_threads(threads)
        for i in range(warmup + repeats):
            elapsed = _time_once(model, x)
            if i >= warmup:
                times.append(elapsed)
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    return times


def latency(
    model: nn.Module,
    in_shape: Sequence[int],
    batch: int,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
) -> float:
    """Median wall time in seconds of one forward pass at ``batch`` (see :func:`timings`)."""
    return statistics.median(timings(model, in_shape, batch, repeats, warmup, threads))


def spread(times: Sequence[float]) -> tuple[float, float, bool]:
    """Median, interquartile range (q75 - q25) and noisy flag of ``times``.

    Args:
        times: the timed repeats (at least one).

    Returns:
        ``(median, iqr, noisy)``, in the unit of ``times``. ``noisy`` is True when the IQR is
        above :data:`NOISY_IQR` times the median. With a single repeat there is no spread to
        measure: the IQR is 0 and the figure is not flagged.
    """
    median = statistics.median(times)
    if len(times) < 2:
        return median, 0.0, False
    q25, _, q75 = statistics.quantiles(times, n=4, method="inclusive")
    iqr = max(0.0, q75 - q25)
    return median, iqr, iqr > NOISY_IQR * median


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
    device), on a copy of the model where it lives elsewhere, with the intra-op thread count
    fixed to ``threads`` (default: :func:`default_threads`) and restored afterwards. For each
    device and batch size:

    - ``cost/latency_ms_b{batch}_{device}``: the median of ``repeats`` timed passes;
    - ``cost/latency_ms_b{batch}_{device}_iqr``: their interquartile range (q75 - q25);
    - ``cost/latency_ms_b{batch}_{device}_noisy``: True when the IQR is above
      :data:`NOISY_IQR` times the median, too wide a spread to trust the median.

    ``cost/latency_threads`` is the thread count used.
    """
    own = next(model.parameters()).device.type
    threads = _check_threads(threads)
    devices = list(devices or [own])
    for device in devices:  # all checked before anything is measured
        if device not in ("cpu", "cuda"):
            raise ValueError(f"latency device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("latency on device 'cuda' asked for, but no GPU is available")
    out: dict[str, float] = {
        "cost/flops": count_flops(model, in_shape),
        "cost/params": count_params(model),
        "cost/state_dict_bytes": state_dict_bytes(model),
        "cost/latency_threads": threads,
    }
    for device in devices:
        net = model if device == own else copy.deepcopy(model).to(device)
        for b in latency_batches:
            times = timings(net, in_shape, b, repeats, threads=threads)
            median, iqr, noisy = spread(times)
            key = f"cost/latency_ms_b{b}_{device}"
            out[key] = 1e3 * median
            out[f"{key}_iqr"] = 1e3 * iqr
            out[f"{key}_noisy"] = noisy
    return out


#: where latency may be measured
LATENCY_DEVICES = ("cpu", "cuda")


class Measure:
    """The measure step of a run: :func:`measure` with a run's settings (``measure`` config).

    Args:
        latency_batches: batch sizes whose latency is timed.
        latency_repeats: timed passes per batch size (median and interquartile range).
        latency_devices: a list of ``cpu`` / ``cuda``, or ``auto``: the CPU, plus the GPU when
            the run computes on one (see :meth:`devices`).
        latency_threads: intra-op threads while timing (None: :func:`default_threads`).
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "latency_batches": int_list(1),
        "latency_repeats": int_at_least(1),
        "latency_devices": Check(
            f"'auto' or a non-empty list of {LATENCY_DEVICES}",
            lambda v: (
                v == "auto"
                or (isinstance(v, list) and bool(v) and all(d in LATENCY_DEVICES for d in v))
            ),
        ),
        "latency_threads": int_at_least(1, nullable=True),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """A device named in ``latency_devices`` is on this machine."""
        devices = values.get("latency_devices")
        if isinstance(devices, list) and "cuda" in devices and not torch.cuda.is_available():
            raise ConfigError(
                f"{prefix}latency_devices names 'cuda', but this machine has no GPU: use [cpu] "
                "or auto"
            )

    def __init__(
        self,
        latency_batches: Sequence[int] = (1, 256),
        latency_repeats: int = 20,
        latency_devices: str | Sequence[str] = "auto",
        latency_threads: int | None = None,
    ) -> None:
        self.latency_batches = [int(b) for b in latency_batches]
        self.latency_repeats = int(latency_repeats)
        auto = isinstance(latency_devices, str) and latency_devices == "auto"
        self.latency_devices = "auto" if auto else [str(d) for d in latency_devices]
        self.latency_threads = None if latency_threads is None else int(latency_threads)

    def devices(self, gpu: bool = False) -> list[str]:
        """The devices to time on; ``auto`` is the CPU, plus ``cuda`` when ``gpu`` (the run
        computes on a GPU)."""
        if self.latency_devices != "auto":
            return list(self.latency_devices)
        return ["cpu", "cuda"] if gpu else ["cpu"]

    def __call__(
        self, model: nn.Module, in_shape: Sequence[int], gpu: bool = False
    ) -> dict[str, float]:
        """:func:`measure` of ``model`` with these settings (``gpu``: see :meth:`devices`)."""
        return measure(
            model,
            in_shape,
            latency_batches=self.latency_batches,
            repeats=self.latency_repeats,
            threads=self.latency_threads,
            devices=self.devices(gpu),
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"Measure({args})"
