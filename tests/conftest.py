"""Shared fixtures: composed configs (package-scoped compose, per-test output folder)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF = str(Path(__file__).resolve().parents[1] / "conf")

FAST = [
    "data=synthetic",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "measure.latency_repeats=2",
]


def compose_cfg(config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides, as the entry point would."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides or [])
    # outside a Hydra run there is no ${hydra:runtime.output_dir}; use a fresh folder
    return with_output(cfg, Path(tempfile.mkdtemp(prefix="lrp_prune_test_")))


def with_output(cfg: DictConfig, path: Path) -> DictConfig:
    """Point the run's output folder (and data root) at ``path``."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.paths.output_dir = str(path)
        cfg.paths.log_dir = str(path / "logs")
    return cfg


@pytest.fixture(autouse=True)
def _no_shared_data(monkeypatch, tmp_path):
    """Unit tests never read ../shared: the data root points at an empty folder."""
    monkeypatch.setenv("LRP_PRUNE_DATA", str(tmp_path / "no_data"))
    torch.manual_seed(0)


@pytest.fixture
def seed() -> int:
    return 0
