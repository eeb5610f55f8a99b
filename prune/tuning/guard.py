"""The Hydra callback of ``tune.py``: its checks before Hydra creates the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from prune.run.hydra_callbacks import exit_on_error, task_config
from prune.tuning.tune import check_tune


class TuneFolderGuard(Callback):
    """Registered by ``conf/tune.yaml`` in place of train.py's guard: a bad value stops the
    search with one line before Hydra writes anything (no ``.hydra`` folder, no log)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        out = str(Path(str(config.hydra.run.dir)).absolute())
        exit_on_error(check_tune, task_config(config, out))
