"""``python killed_run.py MODULE:CLASS.METHOD N [train.py overrides]``: run ``train.py`` and kill
the process (SIGKILL, as a scheduler's preemption or the OOM killer does) at the ``N``-th call
of that method. Nothing is cleaned up, flushed or caught: what the run left on disk is what a
real kill leaves."""

from __future__ import annotations

import functools
import importlib
import os
import runpy
import signal
import sys
from pathlib import Path


def arm(spec: str, n: int) -> None:
    """Replace ``MODULE:CLASS.METHOD`` by a wrapper that kills the process at its n-th call."""
    module_name, _, attr = spec.partition(":")
    cls_name, _, method = attr.partition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    original = getattr(cls, method)
    calls = [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(cls, method, wrapper)


if __name__ == "__main__":
    arm(sys.argv[1], int(sys.argv[2]))
    train = Path(__file__).resolve().parents[2] / "train.py"
    sys.argv = [str(train), *sys.argv[3:]]
    runpy.run_path(str(train), run_name="__main__")
