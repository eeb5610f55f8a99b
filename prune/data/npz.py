"""A user's own arrays from an ``.npz`` file (``x``, ``y``, optional ``x_test``, ``y_test``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from prune.checks import Check, ExistingPath
from prune.data.base import TensorDataModule
from prune.data.checks import check_images
from prune.errors import ConfigError

log = logging.getLogger(__name__)

#: channel counts of a channels-last ``(N, H, W, C)`` array (grey, RGB, RGBA)
CHANNELS_LAST = (1, 3, 4)


def _is_channels_last(shape: tuple[int, ...]) -> bool:
    """``(N, H, W, C)``: the last axis is 1, 3 or 4 and axis 1 is none of these and larger."""
    return (
        len(shape) == 4
        and shape[3] in CHANNELS_LAST
        and shape[1] not in CHANNELS_LAST
        and shape[1] > shape[3]
    )


def _images(array: np.ndarray, key: str, where: str) -> Tensor:
    if array.ndim == 3:  # (N, H, W) -> (N, 1, H, W)
        array = array[:, None]
    elif _is_channels_last(array.shape):
        before, array = array.shape, array.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        log.warning(
            "%s: %s of shape %s read as channels-last (N, H, W, C), transposed to %s",
            where,
            key,
            before,
            array.shape,
        )
    if array.ndim != 4:
        raise ValueError(
            f"{where}: {key} must be images (N, H, W), (N, C, H, W) or channels-last "
            f"(N, H, W, C) with C in {CHANNELS_LAST}, got shape {array.shape}"
        )
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{where}: {key} must be uint8 (0..255) or float in [0, 1], got dtype {array.dtype}; "
            f"convert it (e.g. {key}.astype(np.uint8) for integer pixels 0..255)"
        )
    if array.dtype != np.uint8:  # native float32/float64 for torch (float16, float128, big-endian)
        array = np.ascontiguousarray(array, dtype=np.float64 if array.itemsize > 4 else np.float32)
    images = torch.from_numpy(np.ascontiguousarray(array))
    check_images(where, key, images)  # no samples, an empty axis, NaN/Inf (counted)
    if images.is_floating_point():
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            outside = int(((images < 0) | (images > 1)).sum())
            values = "value" if outside == 1 else "values"
            raise ValueError(
                f"{where}: float {key} holds {outside} {values} outside [0, 1] (min {low:g}, max "
                f"{high:g}); scale it to [0, 1], or store uint8 pixels 0..255"
            )
        images = images.float()
    return images


def _labels(array: np.ndarray, key: str, where: str) -> Tensor:
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{where}: {key} must hold integer labels 0..K-1, got dtype {array.dtype}; store them "
            f"as integers ({key}.astype(np.int64))"
        )
    if array.size and array.max() > np.iinfo(np.int64).max:  # uint64 beyond int64
        raise ValueError(f"{where}: {key} holds a label of {array.max()}; labels must be 0..K-1")
    return torch.from_numpy(array.astype(np.int64))  # shape, length, range: TensorDataModule


class NpzDataModule(TensorDataModule):
    """Images and labels from ``path`` (any image size, any class count).

    Required keys ``x`` and ``y``; optional ``x_test`` and ``y_test`` (both or neither), else
    1/6 of ``x`` is held out for test.

    - ``x``, ``x_test``: uint8 (0..255), or float in [0, 1] without NaN/Inf; shape
      ``(N, H, W)`` (one channel), ``(N, C, H, W)``, or channels-last ``(N, H, W, C)``. The
      rule for channels-last: a 4-d array whose last axis is 1, 3 or 4 while axis 1 is none of
      these and larger than the last (``(N, 28, 28, 3)``) is transposed to ``(N, C, H, W)``
      with one warning line; any other 4-d array is read as ``(N, C, H, W)``. ``x_test`` must
      have the image shape of ``x``.
    - ``y``, ``y_test``: 1-d integer labels, one per image, ``0..K-1`` with a sample of every
      class in ``y`` (or set ``num_classes`` to allow gaps); ``y_test`` holds classes of ``y``.

    Everything else :class:`TensorDataModule` checks (at least 2 classes, non-empty splits)
    applies; every error names the file (``data.path='...'``) and the array.

    Args:
        path: the ``.npz`` file.
        **kwargs: see :class:`TensorDataModule`.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "path": ExistingPath("file", "an .npz file", " with arrays 'x' and 'y'"),
    }

    def __init__(self, path: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if path is None or str(path) in ("", "???"):
            raise ValueError(
                "data.path must name an .npz file with arrays 'x' and 'y' (data=npz data.path=FILE)"
            )
        self.path = Path(path).expanduser()
        self.source = f"npz ({self.path})"

    @property
    def origin(self) -> str:
        """How error messages name this data: ``data.path='...'``."""
        return f"data.path={str(self.path)!r}"

    def check(self) -> None:
        """Open the file and check its keys before any training starts."""
        if self.path.is_dir():
            raise ConfigError(f"{self.origin} is a directory; need an .npz file")
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.origin} does not exist (need an .npz file)")
        try:
            with np.load(self.path, allow_pickle=False) as f:
                keys = set(f.files)
        except Exception as err:
            raise ValueError(f"{self.origin} is not a readable .npz file: {err}") from err
        missing = {"x", "y"} - keys
        if missing:
            raise KeyError(
                f"{self.origin} lacks arrays {sorted(missing)}; "
                f"it has {sorted(keys)}, needs 'x' and 'y'"
            )
        for have, lack in (("x_test", "y_test"), ("y_test", "x_test")):
            if have in keys and lack not in keys:
                raise ValueError(
                    f"{self.origin} has '{have}' but no '{lack}'; add {lack} or drop {have} "
                    "(without both, 1/6 of x is held out for test)"
                )

    def _read(self, f: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
        try:
            return f[key]
        except Exception as err:  # object arrays (pickles), a corrupt member, ...
            message = " ".join(str(err).split())
            raise ValueError(f"{self.origin}: array '{key}' cannot be read: {message}") from None

    def load(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        self.check()
        with np.load(self.path, allow_pickle=False) as f:
            x = _images(self._read(f, "x"), "x", self.origin)
            y = _labels(self._read(f, "y"), "y", self.origin)
            if "x_test" not in f.files:
                return x, y, None, None
            x_test = _images(self._read(f, "x_test"), "x_test", self.origin)
            return x, y, x_test, _labels(self._read(f, "y_test"), "y_test", self.origin)
