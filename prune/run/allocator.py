"""Keep freed memory in the process (``keep_freed_memory``), so a pass does not fault it back in.

glibc's ``malloc`` serves a large block by ``mmap`` and unmaps it when it is freed, and gives
the top of its heap back to the system once more than a threshold of it is free. Both
thresholds move with the program, but a forward and backward pass that allocates and frees
tensors of many sizes keeps crossing them: every pass then asks the kernel for fresh pages, and
each first touch of a page is a page fault that zeroes it. An LRP pass allocates more than a
forward+backward pass, so it pays more of them (the docs' performance page, "Freed memory
kept").

:func:`keep_freed_memory` fixes both thresholds (``mallopt``): blocks up to 32 MiB (glibc's
ceiling) come from the heap, and freed heap memory is kept for the next allocation. The
resident set then stays near its peak instead of shrinking between passes. It does nothing
where the C library is not glibc, and leaves thresholds the user set through glibc's
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: the largest block served from the heap: glibc's ceiling for the mmap threshold on 64-bit
MMAP_THRESHOLD = 32 << 20
#: free memory at the heap's top kept before any is given back
TRIM_THRESHOLD = 1 << 30
#: glibc's variables for the same settings, which win where set
ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None (another C library, or another system)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory(enabled: bool = True) -> bool:
    """Fix glibc's thresholds so freed memory stays in the process (module docstring).

    Args:
        enabled: False leaves the allocator as it is.

    Returns:
        Whether the thresholds were set: False when not ``enabled``, off glibc, or where the
        user set either of :data:`ENV`.
    """
    if not enabled or any(name in os.environ for name in ENV):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # the mmap threshold first: a fixed trim threshold alone stops the mmap threshold from
    # growing, and every large block is then mapped afresh
    done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    done = done and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.debug("mallopt refused the thresholds; the allocator is left as it is")
    return done
