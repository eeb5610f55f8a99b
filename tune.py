"""Tune the LRP composite for pruning with Optuna.

python tune.py +experiment=mnist_vit_fewshot tune.n_trials=50
"""

import hydra
from omegaconf import DictConfig

from prune.run.entry import cli, run
from prune.run.run_names import safe_dirname  # noqa: F401  (registers ${safe_dirname:})


@hydra.main(version_base="1.3", config_path="conf", config_name="tune")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best composite's validation AUC (what was searched on)."""
    from prune.tuning.tune import tune

    return run(tune, cfg).get("best", {}).get("val/auc_pruned")


if __name__ == "__main__":
    cli(main)
