"""Evaluate a checkpoint.

python evaluate.py ckpt_path=logs/train/runs/<date>/checkpoints/round_0/last.ckpt
"""

import hydra
from omegaconf import DictConfig

from prune.run.entry import cli, run
from prune.run.run_names import safe_dirname  # noqa: F401  (registers ${safe_dirname:})


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point."""
    from prune.run.evaluate import evaluate

    return run(evaluate, cfg).get("test/acc")


if __name__ == "__main__":
    cli(main)
