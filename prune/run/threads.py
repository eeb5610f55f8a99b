"""The run's intra-op thread count (``threads``): a number, or ``auto``, the cores left free.

PyTorch runs an operator on as many threads as the machine has cores (``torch``'s default) and
makes them meet at a barrier after every parallel region. Next to another busy process one of
those threads is often descheduled, and the others spin and wait for it at every barrier: on a
2-core machine next to one busy process a run on 2 threads is markedly slower than on 1
(``docs/performance.md``, "Threads"). ``auto`` therefore takes the cores this process may run on,
less the cores other processes keep busy right now, at least 1.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch

log = logging.getLogger(__name__)

#: how long the CPU time of the other processes is sampled for (``auto``)
SAMPLE_S = 0.2
#: torch's own count when this module was first imported: by default the physical cores (a
#: hyperthread is not a core to itself), or ``OMP_NUM_THREADS``
TORCH_DEFAULT = torch.get_num_threads()


def available_cores() -> int:
    """The cores this process may run on (taskset, cgroup cpusets, Slurm), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _cpu_times(cpus: set[int] | None) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over ``cpus`` from ``/proc/stat``, None where unreadable."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is counted in user already)
        values = [float(v) for v in fields[:8]]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)
        busy += sum(values) - idle
        total += sum(values)
    return (busy, total) if total > 0 else None


def busy_cores(cpus: set[int] | None = None, seconds: float = SAMPLE_S) -> float:
    """Cores of ``cpus`` (default: all) kept busy by other processes, sampled over ``seconds``.

    This process sleeps while sampling, so what is counted is the others' work (steal time of a
    virtual machine included). Where ``/proc/stat`` cannot be read (not Linux), the one-minute
    load average stands in, less this process.
    """
    first = _cpu_times(cpus)
    if first is None:
        try:
            return max(0.0, os.getloadavg()[0] - 1.0)
        except (AttributeError, OSError):
            return 0.0
    time.sleep(seconds)
    second = _cpu_times(cpus)
    if second is None or second[1] <= first[1]:
        return 0.0
    share = (second[0] - first[0]) / (second[1] - first[1])  # busy share of the cpus' time
    count = len(cpus) if cpus is not None else available_cores()
    return max(0.0, share * count)


def _env_cap() -> int | None:
    """``OMP_NUM_THREADS`` when set to an integer >= 1: a limit set by the user is kept."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def resolve_threads(value: Any) -> int:
    """The intra-op thread count ``value`` stands for.

    Args:
        value: an integer >= 1 (taken as it is), or ``"auto"``: the cores this process may run
            on (capped at torch's default count, :data:`TORCH_DEFAULT`, and at
            ``OMP_NUM_THREADS`` where that is set), less the cores other processes keep busy now
            (rounded to whole cores, sampled for :data:`SAMPLE_S` seconds), at least 1.

    Returns:
        The thread count, >= 1.

    Raises:
        ValueError: for anything else.
    """
    if value == "auto":
        try:
            cpus: set[int] | None = set(os.sched_getaffinity(0))
        except AttributeError:
            cpus = None
        cores = min(len(cpus) if cpus is not None else available_cores(), TORCH_DEFAULT)
        cap = _env_cap()
        cores = min(cores, cap) if cap is not None else cores
        return max(1, cores - round(busy_cores(cpus))) if cores > 1 else 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"threads must be 'auto' or an integer >= 1, got {value!r}")


def apply_threads(value: Any) -> int:
    """Set torch's intra-op thread count to :func:`resolve_threads` of ``value``.

    One INFO line is logged where the count differs from the one torch had.

    Returns:
        The thread count now set.
    """
    threads = resolve_threads(value)
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
        log.info("threads=%s: %d intra-op threads (torch had %d)", value, threads, before)
    return threads
