from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from prune.pruning.pruner import Pruner

CONF = Path(__file__).resolve().parents[2] / "conf"
CHOICES = sorted(p.stem for p in (CONF / "pruner").glob("*.yaml") if p.stem != "base")


@pytest.mark.parametrize("choice", CHOICES)
def test_pruner_config_instantiates(choice: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=[f"+pruner={choice}", "pruner.keep=5", "pruner.seed=3"])
    pruner = instantiate(cfg.pruner)
    assert isinstance(pruner, Pruner)
    assert pruner.keep == 5
    assert pruner.target in type(pruner.criterion).targets


def test_pruner_configs_cover_every_criterion() -> None:
    assert set(CHOICES) >= {
        "lrp",
        "magnitude",
        "taylor",
        "gradient",
        "random",
        "variance",
        "gradient_x_input",
    }
