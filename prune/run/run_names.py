"""Safe folder names for sweep jobs: the ``${safe_dirname:...}`` resolver of ``conf/hydra``.

A sweep job's folder is named after its overrides (``hydra.job.override_dirname``). A value such
as ``data.path=/data/a.npz`` holds ``/``, which would nest the job's folder at every ``/``; other
characters are not allowed in folder names on some systems, and a long list of overrides exceeds
the 255-byte limit of a file name. :func:`safe_dirname` turns the overrides into one folder name
that stays readable. Importing this module registers it as an OmegaConf resolver; ``train.py``
and ``evaluate.py`` import it before Hydra composes their configs.
"""

from __future__ import annotations

import hashlib
import re

from omegaconf import OmegaConf

#: bytes of a folder name made by :func:`safe_dirname` at most (file systems allow 255; the job
#: number and ``_`` go in front)
MAX_BYTES = 200

# path separators, characters Windows forbids in names, and control characters (NUL included)
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')


def safe_dirname(name: object, max_bytes: int = MAX_BYTES) -> str:
    """``name`` as one folder name: no separators, no forbidden characters, not too long.

    Every ``/``, ``\\``, ``:``, ``*``, ``?``, ``"``, ``<``, ``>``, ``|`` and control character
    becomes ``_`` (``data.path=/tmp/a.npz`` -> ``data.path=_tmp_a.npz``); a leading ``.`` or
    ``-`` (a hidden file, an option) gets a ``_`` in front. A name longer than ``max_bytes``
    (UTF-8) is cut and ends in ``~`` and a hash of the whole name, so two long names that
    differ only at the end stay apart.

    Args:
        name: the text to turn into a folder name (``hydra.job.override_dirname``).
        max_bytes: the longest result, in UTF-8 bytes; at least 16.

    Returns:
        The folder name; empty when ``name`` is empty.

    Raises:
        ValueError: ``max_bytes`` is below 16.
    """
    if max_bytes < 16:
        raise ValueError(f"max_bytes must be >= 16, got {max_bytes}")
    text = _UNSAFE.sub("_", str(name))
    if text.startswith((".", "-")):
        text = "_" + text
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    digest = "~" + hashlib.sha1(str(name).encode("utf-8")).hexdigest()[:10]
    head = raw[: max_bytes - len(digest)].decode("utf-8", errors="ignore")
    return head + digest


if not OmegaConf.has_resolver("safe_dirname"):
    OmegaConf.register_new_resolver("safe_dirname", safe_dirname)

__all__ = ["MAX_BYTES", "safe_dirname"]
