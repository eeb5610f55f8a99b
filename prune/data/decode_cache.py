"""A cache of decoded data: one file per source and settings, stored as data, written atomically.

Decoding a folder of images takes far longer than reading the tensors back. The cache keeps them
in ``torch.save`` format (tensors, strings and lists only, read with ``weights_only=True``) next
to a *fingerprint* of what was decoded; a cache whose fingerprint differs from the source's now
is stale and decoded again, and so is one that cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


class DecodeCache:
    """The cache file of ``source`` decoded with ``settings``, in ``folder``.

    Args:
        folder: where cache files live.
        source: the decoded file or folder (its resolved path names the cache).
        settings: everything besides the source that changes the decoded tensors (JSON-able).
    """

    def __init__(self, folder: Path, source: Path, settings: dict[str, Any]) -> None:
        self.source, self.settings = source.resolve(), settings
        key = json.dumps([str(self.source), settings], sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.source.name) or "data"
        self.path = folder / f"{name}-{digest}.pt"

    def read(self, fingerprint: str) -> dict[str, Any] | None:
        """The stored content when its fingerprint is ``fingerprint``, else None."""
        if not self.path.is_file():
            return None
        try:
            stored = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, foreign or unsafe: decode again
            log.warning("cache %s is unreadable (%s); decoding again", self.path, err)
            return None
        fresh = isinstance(stored, dict) and stored.get("fingerprint") == fingerprint
        if not fresh:
            log.info("cache %s is out of date (the source changed); decoding again", self.path)
        return stored if fresh else None

    def write(self, content: dict[str, Any], fingerprint: str) -> None:
        """Store ``content`` with ``fingerprint``; a failure to write is logged, not raised."""
        path = self.path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({**content, "fingerprint": fingerprint}, tmp)
            tmp.replace(path)  # a reader sees the old cache or the new one, never half of one
            log.info("cache written: %s", path)
        except OSError as err:
            log.warning("cache %s could not be written (%s); continuing without", path, err)
        finally:
            tmp.unlink(missing_ok=True)
