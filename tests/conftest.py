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
#: a ViT run of a few seconds: small synthetic data, a 2-block ViT of width 16, a few batches
TINY_VIT = [
    *FAST,
    "~logger",
    "threads=1",
    "data.num_train=320",
    "data.num_test=64",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.relevance_per_class=4",
    "model.net.dim=16",
    "model.net.depth=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "measure.latency_batches=[1]",
    "measure.latency_repeats=1",
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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: its tensors are tiny, and a second thread only spins
    while the shared CPU cores are busy (20x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
