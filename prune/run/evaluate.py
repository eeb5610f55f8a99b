"""Evaluating a checkpoint (``evaluate.py``): rebuild its model, test it, measure it, and run
the explanation step on it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prune.run.allocator import keep_freed_memory
from prune.run.build import (
    accuracy_of,
    build_datamodule,
    build_module,
    make_trainer,
    trainer_uses_gpu,
)
from prune.run.console import show
from prune.run.explanations import run_explanations
from prune.run.preflight import check_evaluate
from prune.run.report import figures_table
from prune.run.results import write_results
from prune.run.threads import apply_threads

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the model from the run's config, load the checkpoint, test and measure it."""
    run_cfg, ckpt = check_evaluate(cfg)  # before any work; nothing instantiated yet
    start = time.perf_counter()
    keep_freed_memory(cfg.get("keep_freed_memory", True))
    apply_threads(cfg.get("threads", "auto"))  # intra-op threads: auto, the cores left free
    ckpt_path = cfg.ckpt_path
    out = Path(cfg.paths.output_dir)
    L.seed_everything(int(cfg.seed), workers=True)
    measure = instantiate(cfg.measure)
    dm = build_datamodule(run_cfg)
    module = build_module(run_cfg, dm)
    module.on_load_checkpoint(ckpt)
    try:
        module.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ValueError(
            f"ckpt_path={str(ckpt_path)!r} does not fit model {run_cfg.model.net._target_}: "
            f"{str(err).splitlines()[0]}"
        ) from err
    trainer = make_trainer(cfg, version="evaluate", callbacks=False)
    acc = accuracy_of(trainer, module, dm)
    results = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "checkpoint": str(ckpt_path),
        "model_seed": run_cfg.get("seed"),  # the seed the checkpoint's run trained with
        "data": dm.describe(),
        "plan": None if module.plan is None else module.plan.to_dict(),
        "test/acc": acc,
        **measure(module.net, module.in_shape, trainer_uses_gpu(cfg)),
    }
    if cfg.get("explanations"):
        results["explanations"] = run_explanations(
            instantiate(cfg.explanations),
            module,
            dm,
            out,
            trainer.logger or None,
            seed=int(cfg.seed),
            accelerator=cfg.trainer.accelerator,
        )
    results["status"] = "complete"
    results["wall_s"] = round(time.perf_counter() - start, 1)
    write_results(out / "evaluation.json", results)
    kept = None if module.plan is None else module.plan.summary()
    name = Path(str(ckpt_path))
    show(figures_table({**results, "kept": kept}, title=f"{name.parent.name}/{name.name}"), [])
    log.info("results: %s", out / "evaluation.json")
    return results
