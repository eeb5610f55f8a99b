"""The performance page (``docs/performance.md``): its prose, with the summaries' figures filled in.

Each section reads its summary files and is left out where they are missing; the sections live
in ``performance_cpu.py``, ``performance_gpu.py`` and ``performance_threads.py``, what they share
in ``performance_common.py``.
"""

from __future__ import annotations

from page_text import Summaries
from performance_cpu import cpu_overview, lrp_speed, memory, transformers, where_time_goes
from performance_gpu import gpu
from performance_threads import threads

SECTIONS = [cpu_overview, lrp_speed, transformers, memory, where_time_goes, gpu, threads]


def render(summaries: Summaries) -> str:
    """The whole page: every section whose summaries are there."""
    parts = ["# Performance"] + [text for section in SECTIONS if (text := section(summaries))]
    return "\n\n".join(parts) + "\n"
