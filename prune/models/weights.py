"""Pretrained weights: whether they are cached on this machine, or can be fetched."""

from __future__ import annotations

import os
import socket
from enum import Enum
from pathlib import Path
from urllib.parse import urlparse

import torch

#: environment variables that route downloads through a proxy (the server is then not probed)
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (assumed so
    behind a proxy, which a direct probe cannot judge)."""
    if any(os.environ.get(k) for k in PROXIES):
        return True
    parts = urlparse(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def hub_file(url: str) -> Path:
    """Where torch's hub cache keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rpartition("/")[2]


def torchvision_cached(weights: Enum) -> bool:
    """Whether the file of a torchvision weights enum member is in torch's hub cache."""
    return hub_file(weights.url).is_file()


def timm_cached(name: str) -> bool:
    """Whether the pretrained weights of timm model ``name`` are in the Hugging Face cache or
    torch's hub cache (or a local file its pretrained config names)."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return False
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, filename, revision=revision or None), str):
                return True
    if cfg.url and hub_file(cfg.url).is_file():
        return True
    return bool(cfg.file) and Path(cfg.file).is_file()
