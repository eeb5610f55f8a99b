"""CIFAR-10 through torchvision: downloaded when the network allows, else read from the root."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from textwrap import shorten
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchvision import datasets

from prune.checks import Check, boolean
from prune.data.base import TensorDataModule
from prune.data.mnist import resolve_root

log = logging.getLogger(__name__)


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50k training and 10k test images, 3x32x32, 10 classes.

    The files are torchvision's: the python version of the dataset, extracted under
    ``<root>/cifar-10-batches-py`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
    ``batches.meta``). torchvision checks each file's MD5 before it unpickles it, so only the
    official files are read. Missing files are downloaded (``cifar-10-python.tar.gz``, 163 MB,
    verified and extracted; an archive already in ``<root>`` is used without the network) when
    ``download`` is on; where that fails, the run stops with one line that says where the files
    go.

    Args:
        root: data root (``data.root``; None: ``$LRP_PRUNE_DATA``, else ``./data``).
        download: try torchvision's download when the files are missing.
        augment: device augmentation of training batches, e.g. ``[crop, flip]`` (the usual
            CIFAR recipe; see :class:`prune.data.base.TensorDataModule`).
        crop_padding: padding of the random crop (4 in He et al. 2016).
        **kwargs: see :class:`prune.data.base.TensorDataModule`; ``num_classes`` defaults to
            the dataset's (10).
    """

    dataset_cls: ClassVar[type] = datasets.CIFAR10
    name: ClassVar[str] = "CIFAR-10"
    #: the dataset's class count: ``num_classes`` unless set
    classes: ClassVar[int] = 10
    config_checks: ClassVar[dict[str, Check]] = {"download": boolean()}

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        augment: list[str] | None = None,
        crop_padding: int = 4,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("num_classes") is None:
            kwargs["num_classes"] = self.classes
        super().__init__(augment=augment, crop_padding=crop_padding, **kwargs)
        self.root = resolve_root(root)
        self.download = bool(download)
        self.folder = self.root / self.dataset_cls.base_folder
        self.source = f"{self.name} ({self.folder})"

    @property
    def origin(self) -> str:
        """How error messages name this data: the root and the dataset's folder."""
        return f"data.root={str(self.root)!r} ({self.name})"

    @classmethod
    def files(cls) -> list[str]:
        """The names of the dataset's files in its folder."""
        ds = cls.dataset_cls
        return [name for name, _ in (*ds.train_list, *ds.test_list)] + [ds.meta["filename"]]

    @classmethod
    def present_in(cls, root: Path) -> bool:
        """Whether every file of the dataset is in its folder under ``root`` (not yet checked)."""
        return all((root / cls.dataset_cls.base_folder / f).is_file() for f in cls.files())

    @classmethod
    def missing(cls, root: Path, download: bool, reason: str) -> str:
        """The one line for files that are not under ``root`` and did not come."""
        ds, folder = cls.dataset_cls, root / cls.dataset_cls.base_folder
        get = f"{ds.filename} in {root} (from {ds.url})"
        if not download:
            get = f"data.download=true (it fetches {ds.url}, or extracts {ds.filename} in {root})"
        return (
            f"data.root={str(root)!r} ({cls.name}): no {cls.name} files in {folder} and {reason}; "
            f"put the extracted python version there ({folder}/{cls.files()[0]}, ...), or {get}, "
            "or set data.root (LRP_PRUNE_DATA) to the folder that holds them"
        )

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """Files that are missing with ``download=false`` cannot come."""
        root = resolve_root(values.get("root"))
        if values.get("download") is False and not cls.present_in(root):
            raise FileNotFoundError(cls.missing(root, False, f"{prefix}download=false"))

    def present(self) -> bool:
        """Whether every file of the dataset is in its folder (not yet checked)."""
        return self.present_in(self.root)

    def check(self) -> None:
        """Fail fast (before training) when the files are missing and download is off."""
        if not self.download and not self.present():
            raise FileNotFoundError(self.missing(self.root, False, "data.download=false"))

    def _download(self) -> None:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(10)  # an unreachable mirror fails in seconds, not minutes
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.dataset_cls(str(self.root), train=True, download=True)
        except Exception as err:  # no network, read-only root, mirror down: all mean "not here"
            reason = shorten(str(err), 200, placeholder=" ...") or type(err).__name__
            raise FileNotFoundError(
                self.missing(self.root, True, f"the download failed ({reason})")
            ) from None
        finally:
            socket.setdefaulttimeout(previous)

    def _read(self, train: bool) -> tuple[Tensor, Tensor]:
        try:
            ds = self.dataset_cls(str(self.root), train=train, download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise ValueError(
                f"{self.origin}: the files in {self.folder} fail torchvision's MD5 check "
                f"({err}); replace them with the official python version ({self.dataset_cls.url})"
            ) from None
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> NCHW
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    def load(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        if not self.present():
            self.check()
            self._download()
        x, y = self._read(train=True)
        x_test, y_test = self._read(train=False)
        return x, y, x_test, y_test
