"""The backward passes of one explained forward, one per seed: side by side on the CPU.

absLRP's contrastive map takes two backward passes through one retained graph, the target's
seed and the other classes'. Each reads the graph's saved tensors and writes only its own, so on
the CPU they run in two threads at once, the intra-op threads split between them: the many small
operations and the Python work of each node, which one thread runs one after another and which
two intra-op threads barely share, then overlap. With one seed, one intra-op thread, another
device, or a dispatch or function mode active (a FLOP counter, a tracer: modes belong to the
thread that entered them) the passes run one after another, as a single pass does.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")

#: the worker threads of the extra passes, made on first use, and how many it has
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def run_passes(
    one_pass: Callable[[torch.Tensor, bool], T], seeds: Sequence[torch.Tensor], device: torch.device
) -> list[T]:
    """``[one_pass(seed, retain_graph) for seed in seeds]``, side by side where that helps.

    ``retain_graph`` is False for the last pass only when the passes run one after another; side
    by side every pass retains the graph, which is freed with its last reference.
    """
    n, threads = len(seeds), torch.get_num_threads()
    if n == 1 or device.type != "cpu" or threads < n or _modes_active():
        return [one_pass(seed, i < n - 1) for i, seed in enumerate(seeds)]
    share = threads // n

    def in_worker(seed: torch.Tensor) -> T:
        torch.set_num_threads(share)  # a thread's own setting (OpenMP's is per thread)
        return one_pass(seed, True)

    torch.set_num_threads(share)
    futures = [_workers(n - 1).submit(in_worker, seed) for seed in seeds[1:]]
    try:
        first = one_pass(seeds[0], True)
        return [first, *(future.result() for future in futures)]
    finally:
        concurrent.futures.wait(futures)  # none may still run when the setting comes back
        torch.set_num_threads(threads)


def _modes_active() -> bool:
    """Whether a dispatch or function mode is active in this thread."""
    return torch._C._len_torch_dispatch_stack() > 0 or torch._C._len_torch_function_stack() > 0


def _forget_pool() -> None:
    """In a forked child: the parent's worker threads do not exist there; make new ones."""
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_forget_pool)


def _workers(count: int) -> concurrent.futures.ThreadPoolExecutor:
    """The pool of worker threads, with at least ``count`` of them."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < count:
            _pool = concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="lrp-pass")
            _pool_size = count
        return _pool
