from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import instantiate

from prune.run.build import build_composite, build_datamodule, build_module
from tests.conftest import CONF, FAST, compose_cfg

EXPERIMENTS = sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml"))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml") if p.stem != "base")


@pytest.mark.parametrize("model", _options("model"))
def test_every_model_config_instantiates(model):
    cfg = compose_cfg("train", [*FAST, f"model={model}"])
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    assert module.net.num_classes == dm.num_classes


@pytest.mark.parametrize("data", ["synthetic", "mnist_sample", "mnist"])
def test_data_configs_instantiate(data):
    cfg = compose_cfg("train", [f"data={data}"])
    dm = instantiate(cfg.data)
    assert dm.batch_size >= 1


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "lrp", "pruner", "debug"])
def test_every_group_option_composes(group):
    for option in _options(group):
        cfg = compose_cfg("train", [*FAST, f"{group}={option}"])
        assert cfg is not None


@pytest.mark.parametrize("lrp", _options("lrp"))
def test_every_lrp_config_instantiates(lrp):
    cfg = compose_cfg("train", [*FAST, f"lrp={lrp}"])
    assert build_composite(cfg, build_datamodule(cfg)) is not None


@pytest.mark.parametrize("pruner", _options("pruner"))
def test_every_pruner_config_instantiates(pruner):
    cfg = compose_cfg("train", [f"pruner={pruner}"])
    assert instantiate(cfg.pruner) is not None


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment):
    cfg = compose_cfg("train", [f"+experiment={experiment}", "data=synthetic"])
    dm = build_datamodule(cfg)
    build_module(cfg, dm)
    if cfg.get("lrp"):
        build_composite(cfg, dm)
    if cfg.get("pruner"):
        instantiate(cfg.pruner)


def test_unknown_model_names_the_group_and_options():
    with pytest.raises(MissingConfigException, match="model/nope"):
        compose_cfg("train", ["model=nope"])


def test_evaluate_config_requires_ckpt_path():
    cfg = compose_cfg("evaluate", [])
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue, match="ckpt_path"):
        _ = cfg.ckpt_path
