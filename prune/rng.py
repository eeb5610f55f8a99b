"""Random states as plain data (tensors, lists, numbers): saved in checkpoints and in a run's
``rng/`` folder, and read back with ``weights_only=True``, so a resumed run draws the same
numbers (data order, dropout, latency inputs) as one that was never interrupted."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def collect() -> dict[str, Any]:
    """This process's random states: torch (CPU and every CUDA device), NumPy and Python."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (global state)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch.cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Set the random states saved by :func:`collect`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "torch.cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch.cuda"])
