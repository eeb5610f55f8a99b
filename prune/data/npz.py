"""A user's own arrays from an ``.npz`` file (``x``, ``y``, optional ``x_test``, ``y_test``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from prune.data.base import TensorDataModule


def _images(array: np.ndarray, key: str, path: Path) -> Tensor:
    if array.ndim == 3:  # (N, H, W) -> (N, 1, H, W)
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(
            f"{path}: '{key}' must be (N, H, W) or (N, C, H, W), got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{path}: '{key}' must be uint8 or float in [0, 1], got dtype {array.dtype}"
        )
    if array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"{path}: float '{key}' must lie in [0, 1], got [{array.min()}, {array.max()}]"
        )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _labels(array: np.ndarray, key: str, n: int, path: Path) -> Tensor:
    if (
        array.ndim != 1
        or len(array) != n
        or not np.issubdtype(array.dtype, np.integer)
        or array.min() < 0
    ):
        raise ValueError(
            f"{path}: '{key}' must be {n} non-negative integer labels, "
            f"got {array.dtype} {array.shape}"
        )
    return torch.from_numpy(array.astype(np.int64))


class NpzDataModule(TensorDataModule):
    """Images and labels from ``path`` (any image size, any class count).

    Required keys ``x`` (uint8, or float in [0, 1]; ``(N, H, W)`` or ``(N, C, H, W)``) and ``y``
    (integer labels ``0..K-1``); optional ``x_test``/``y_test``, else 1/6 is held out for test.

    Args:
        path: the ``.npz`` file.
        **kwargs: see :class:`TensorDataModule`.
    """

    def __init__(self, path: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if path is None or str(path) in ("", "???"):
            raise ValueError(
                "data.path must name an .npz file with arrays 'x' and 'y' (data=npz data.path=FILE)"
            )
        self.path = Path(path).expanduser()
        self.source = f"npz ({self.path})"

    def check(self) -> None:
        """Open the file and check its keys before any training starts."""
        if not self.path.is_file():
            raise FileNotFoundError(f"data.path={str(self.path)!r} does not exist")
        try:
            with np.load(self.path, allow_pickle=False) as f:
                keys = set(f.files)
        except Exception as err:
            raise ValueError(
                f"data.path={str(self.path)!r} is not a readable .npz file: {err}"
            ) from err
        missing = {"x", "y"} - keys
        if missing:
            raise KeyError(
                f"data.path={str(self.path)!r} lacks arrays {sorted(missing)}; "
                f"it has {sorted(keys)}, needs 'x' and 'y'"
            )

    def load(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        self.check()
        with np.load(self.path, allow_pickle=False) as f:
            x = _images(f["x"], "x", self.path)
            y = _labels(f["y"], "y", len(x), self.path)
            if "x_test" in f.files and "y_test" in f.files:
                x_test = _images(f["x_test"], "x_test", self.path)
                return x, y, x_test, _labels(f["y_test"], "y_test", len(x_test), self.path)
        return x, y, None, None
