"""A folder of images, one sub-folder per class, decoded once into a cached uint8 tensor
(:mod:`prune.data.decode_cache`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from textwrap import shorten
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from prune.checks import Check, ExistingPath, boolean, is_int
from prune.data.base import TensorDataModule
from prune.data.batches import TensorBatchDataset
from prune.data.checks import _plural, check_images, check_labels
from prune.data.decode_cache import DecodeCache
from prune.data.mnist import resolve_root
from prune.errors import ConfigError

log = logging.getLogger(__name__)

#: file name endings read as images (case-insensitive); other files are ignored
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
#: PIL modes of one-channel images (``channels=null`` makes the data grey when all are)
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
#: sub-folders that, with ``train/`` present, hold the splits instead of classes
SPLITS = ("train", "val", "test")
#: bumped when the cache's layout changes (an older cache is then decoded again)
CACHE_FORMAT = 1


class ImageFolderDataModule(TensorDataModule):
    """Images of any size, RGB or grey, from ``path``: one sub-folder per class.

    Layout: either ``path/<class>/**/<image>`` (validation and test are then split from it,
    seeded: ``val_size``, and 1/6 held out for test), or ``path/train/<class>/...`` with
    optional ``path/val/<class>/...`` and ``path/test/<class>/...`` (a missing one is split from
    ``train`` as above). Class indices are the sorted class-folder names of ``train``; ``val``
    and ``test`` may lack a class but not add one. Files other than images (by their ending,
    :data:`IMAGE_SUFFIXES`) and hidden files and folders are ignored.

    Every image is decoded once: scaled (bilinear, aspect ratio kept) until it covers
    ``image_size``, cropped at the centre to that size, and converted to grey (PIL's luma) or
    RGB. The result, uint8 ``(N, C, H, W)`` per split plus an index of the files, is cached as a
    ``.pt`` of tensors, strings and numbers (read with ``weights_only=True``) in ``cache_dir``,
    one file per folder and image size. It is reused while the folder's fingerprint (every
    image's path, size and modification time) is the same, and decoded again when it changes.

    Errors are one line naming the folder: no class folders, a class folder without images, an
    image that cannot be read (named), fewer than 2 classes, a ``val``/``test`` class that
    ``train`` lacks.

    Args:
        path: the image folder.
        image_size: ``H`` (square) or ``[H, W]`` of the decoded images.
        channels: 1 (grey) or 3 (RGB); None: 1 when every image is grey, else 3.
        cache: keep the decoded tensors in ``cache_dir`` (False: decode every run).
        cache_dir: folder of the cache files; None: ``image_cache`` under the data root
            (``$LRP_PRUNE_DATA``, else ``./data``). A cache folder inside ``path`` is skipped
            when the images are listed.
        augment: device augmentation of training batches (see :class:`TensorDataModule`).
        crop_padding: padding of the random crop.
        **kwargs: see :class:`prune.data.base.TensorDataModule`; ``val_size`` applies only
            without a ``val/`` folder.
    """

    source = "image_folder"
    config_checks: ClassVar[dict[str, Check]] = {
        "path": ExistingPath("dir", "a folder of images, one sub-folder per class"),
        "image_size": Check(
            "an integer >= 1 or [H, W] of them",
            lambda v: (
                (is_int(v) and v >= 1)
                or (
                    isinstance(v, (list, tuple))
                    and len(v) in (1, 2)
                    and all(is_int(s) and s >= 1 for s in v)
                )
            ),
        ),
        "channels": Check("1, 3 or null (auto)", lambda v: is_int(v) and v in (1, 3), True),
        "cache": boolean(),
        "cache_dir": Check("a folder or null", lambda v: isinstance(v, str), nullable=True),
    }

    def __init__(
        self,
        path: str | None = None,
        image_size: int | Sequence[int] = 64,
        channels: int | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
        augment: Sequence[str] | None = None,
        crop_padding: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(augment=augment, crop_padding=crop_padding, **kwargs)
        if path is None or str(path) in ("", "???"):
            raise ConfigError(
                "data.path must name a folder of images, one sub-folder per class "
                "(data=image_folder data.path=DIR)"
            )
        self.path = Path(path).expanduser()
        self.image_size = _size(image_size)
        if channels not in (None, 1, 3) or isinstance(channels, bool):
            raise ConfigError(f"data.channels must be 1, 3 or null (auto), got {channels!r}")
        self.channels = channels
        self.cache = bool(cache)
        default = resolve_root(None) / "image_cache"
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default
        self.source = f"image_folder ({self.path})"
        self.classes: list[str] = []
        self._listing: dict[str, list[tuple[Path, int]]] | None = None
        self._decoded: dict[str, tuple[Tensor, Tensor]] | None = None

    @property
    def origin(self) -> str:
        """How error messages name this data: ``data.path='...'``."""
        return f"data.path={str(self.path)!r}"

    # -- listing -------------------------------------------------------------------------------
    def check(self) -> None:
        """List the folder and refuse a layout that cannot train a classifier (nothing decoded).

        Raises:
            FileNotFoundError: for a path that is not a folder.
            ValueError: no class folders, a class folder without images, fewer than 2 classes,
                a ``val``/``test`` class that ``train`` lacks, or other folders beside ``train/``.
        """
        self._list()

    def _list(self) -> dict[str, list[tuple[Path, int]]]:
        """``{split: [(image file, class index), ...]}`` in a fixed order; sets ``classes``."""
        if self._listing is not None:
            return self._listing
        if not self.path.is_dir():
            what = "is not a folder" if self.path.exists() else "does not exist"
            raise FileNotFoundError(
                f"{self.origin} {what}; need a folder with one sub-folder of images per class"
            )
        folders = {d.name: d for d in self._subfolders(self.path)}
        if "train" in folders:
            others = sorted(set(folders) - set(SPLITS))
            if others:
                raise ValueError(
                    f"{self.origin} holds train/ and other folders {others}; use either train/ "
                    "(and val/, test/) of class folders, or class folders only"
                )
            splits = {s: folders[s] for s in SPLITS if s in folders}
        else:
            splits = {"train": self.path}
        listing: dict[str, list[tuple[Path, int]]] = {}
        for split, folder in splits.items():
            class_dirs = self._subfolders(folder)
            where = "" if folder == self.path else f" {split}/"
            if not class_dirs:
                raise ValueError(
                    f"{self.origin}{where} holds no class folders; need one sub-folder of images "
                    "per class (DIR/<class>/*.png), or train/ (and val/, test/) folders of them"
                )
            if split == "train":
                self.classes = [d.name for d in class_dirs]
            index = {name: k for k, name in enumerate(self.classes)}
            files: list[tuple[Path, int]] = []
            for class_dir in class_dirs:
                if class_dir.name not in index:
                    raise ValueError(
                        f"{self.origin}: class folder {split}/{class_dir.name} is not a class of "
                        f"train/ ({', '.join(self.classes[:8])}{', ...' if len(index) > 8 else ''})"
                    )
                images = self._images(class_dir)
                if not images:
                    raise ValueError(
                        f"{self.origin}: class folder {class_dir.relative_to(self.path)} holds no "
                        f"images ({' '.join(IMAGE_SUFFIXES)}); add some or remove the folder"
                    )
                files += [(f, index[class_dir.name]) for f in images]
            listing[split] = files
        if len(self.classes) < 2:
            raise ValueError(
                f"{self.origin} has {_plural(len(self.classes), 'class folder')} "
                f"({', '.join(self.classes)}); a classifier needs at least 2"
            )
        self._listing = listing
        return listing

    def _subfolders(self, folder: Path) -> list[Path]:
        cache = self.cache_dir.resolve()
        return sorted(
            d
            for d in folder.iterdir()
            if d.is_dir() and not d.name.startswith(".") and d.resolve() != cache
        )

    def _images(self, folder: Path) -> list[Path]:
        found = []
        for root, dirs, names in os.walk(folder, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [
                Path(root) / n
                for n in sorted(names)
                if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)
            ]
        return found

    # -- cache ---------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "image_size": list(self.image_size),
            "channels": self.channels,
        }

    def cache_file(self) -> Path:
        """The cache file of this folder and these settings."""
        return self._cache().path

    def _cache(self) -> DecodeCache:
        return DecodeCache(self.cache_dir, self.path, self._settings())

    def fingerprint(self) -> str:
        """A digest of every listed image's split, path, size and modification time."""
        digest = hashlib.sha256(json.dumps(self._settings(), sort_keys=True).encode())
        for split, files in self._list().items():
            for file, label in files:
                stat = file.stat()
                entry = f"{split}\0{file.relative_to(self.path)}\0{label}\0{stat.st_size}\0"
                digest.update(f"{entry}{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    # -- decoding ------------------------------------------------------------------------------
    def _load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{split: (x uint8 (N, C, H, W), y int64 (N,))}``, from the cache or decoded."""
        if self._decoded is not None:
            return self._decoded
        listing = self._list()
        stored = None
        if self.cache:
            fingerprint, cache = self.fingerprint(), self._cache()
            stored = cache.read(fingerprint)
        if stored is None:
            stored = self._decode_all(listing)
            if self.cache:
                cache.write(stored, fingerprint)
        self.classes = list(stored["classes"])
        self._decoded = {s: (v["x"], v["y"]) for s, v in stored["splits"].items()}
        return self._decoded

    def _decode_all(self, listing: dict[str, list[tuple[Path, int]]]) -> dict[str, Any]:
        files = [f for split in listing.values() for f, _ in split]
        start = time.perf_counter()
        log.info("decoding %d images of %s at %dx%d", len(files), self.path, *self.image_size)
        threads = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(threads) as pool:
            decoded = list(pool.map(self._decode, files))
        grey = all(is_grey for _, is_grey in decoded)
        channels = self.channels or (1 if grey else 3)
        splits, offset = {}, 0
        for split, entries in listing.items():
            x = torch.empty((len(entries), channels, *self.image_size), dtype=torch.uint8)
            for i, (array, _) in enumerate(decoded[offset : offset + len(entries)]):
                image = torch.from_numpy(array)
                image = image.unsqueeze(0) if image.dim() == 2 else image.permute(2, 0, 1)
                x[i] = image  # (1, H, W) broadcasts to RGB: PIL's L -> RGB is a copy per channel
            y = torch.tensor([label for _, label in entries], dtype=torch.int64)
            names = [str(f.relative_to(self.path)) for f, _ in entries]
            splits[split] = {"x": x, "y": y, "files": names}
            offset += len(entries)
        log.info("decoded %d images in %.1f s", len(files), time.perf_counter() - start)
        return {"format": CACHE_FORMAT, "classes": list(self.classes), "splits": splits}

    def _decode(self, file: Path) -> tuple[np.ndarray, bool]:
        """One image as uint8 ``(H, W)`` (grey) or ``(H, W, 3)``, and whether its file is grey."""
        height, width = self.image_size
        try:
            with Image.open(file) as image:
                grey = image.mode in GREY_MODES
                mode = {1: "L", 3: "RGB"}.get(self.channels, "L" if grey else "RGB")
                image.draft(mode, (width, height))  # JPEG: decode at a cheaper scale >= the size
                image = image.convert(mode)
                w0, h0 = image.size
                scale = max(width / w0, height / h0)  # cover the target, keep the aspect ratio
                size = (max(width, round(w0 * scale)), max(height, round(h0 * scale)))
                if size != image.size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
                left, top = (size[0] - width) // 2, (size[1] - height) // 2
                image = image.crop((left, top, left + width, top + height))
                return np.array(image, dtype=np.uint8), grey  # a writable copy
        except Exception as err:  # not an image, truncated, a decompression bomb, ...
            message = shorten(str(err), 200, placeholder=" ...") or type(err).__name__
            raise ValueError(f"{self.origin}: cannot read image {file}: {message}") from None

    # -- the splits ----------------------------------------------------------------------------
    def load(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        splits = self._load_splits()
        x, y = splits["train"]
        x_test, y_test = splits.get("test", (None, None))
        return x, y, x_test, y_test

    def setup(self, stage: str | None = None) -> None:
        """As :meth:`TensorDataModule.setup`, with the ``val/`` folder as validation set if any.

        Raises:
            ValueError: see :meth:`check` and :meth:`TensorDataModule.setup`.
        """
        if self.train_set is not None:
            return
        splits = self._load_splits()
        try:
            if "val" not in splits:
                super().setup(stage)
                return
            val_size, self.val_size = self.val_size, 0  # validation comes from val/
            try:
                super().setup(stage)
            finally:
                self.val_size = val_size
            x_val, y_val = splits["val"]
            check_images(self.origin, "x_val", x_val)
            check_labels(self.origin, "y_val", y_val, len(x_val), "x_val")
            self.val_set = TensorBatchDataset(x_val, y_val)
        finally:
            self._decoded = None  # the splits hold their own copies

    def describe(self) -> dict[str, Any]:
        """Facts for results.json, with the class names, image size and cache file."""
        facts = super().describe()
        facts["classes"] = list(self.classes)
        facts["image_size"] = list(self.image_size)
        facts["cache"] = str(self.cache_file()) if self.cache else None
        return facts


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` as ``(H, W)``: one integer (square) or two, each >= 1."""
    sizes = [image_size] if isinstance(image_size, int) else list(image_size or ())
    valid = len(sizes) in (1, 2) and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes
    )
    if not valid:
        raise ConfigError(
            f"data.image_size must be an integer >= 1 or [H, W] of them, got {image_size!r}"
        )
    return (sizes[0], sizes[-1])
