"""Train, explain, prune, retrain: python train.py +experiment=mnist_prune"""

import hydra
from omegaconf import DictConfig

from prune.run.entry import cli, run
from prune.run.run_names import safe_dirname  # noqa: F401  (registers ${safe_dirname:})


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the optimised metric for sweepers."""
    from prune.run.rounds import train

    results = run(train, cfg)
    final = results.get("final") or (results.get("rounds") or [{}])[-1]  # {} for a failed job
    return final.get(cfg.get("optimized_metric", "test/acc"))


if __name__ == "__main__":
    cli(main)
