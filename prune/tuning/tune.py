"""A tuning run (``tune.py``): search the LRP rule of each layer group, and the criterion's |R|
against signed R, for the best few-shot pruning curve on the validation split; then measure the
best composite and the default one on the test split, side by side, in ``tune_results.json``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prune.checks import Check, choice, int_at_least, integer
from prune.errors import ConfigError
from prune.lrp.composites import CPLRP, AttnLRP, Composite
from prune.pruning.criteria.base import Criterion
from prune.pruning.criteria.lrp import LRPCriterion
from prune.pruning.pruner import Pruner
from prune.run.allocator import keep_freed_memory
from prune.run.build import (
    best_checkpoint,
    build_composite,
    build_datamodule,
    build_module,
    make_trainer,
    trainer_uses_gpu,
)
from prune.run.checkpoint import check_checkpoint_fits, load_checkpoint
from prune.run.config_keys import check_component, check_keys, find_class, get_value
from prune.run.console import show
from prune.run.results import write_results, write_text
from prune.run.threads import apply_threads
from prune.run.validation import validate_config, validate_run
from prune.tuning.composite import GroupRules, group_rules_config
from prune.tuning.fewshot import Batches, Curve, batches_of, explain_with, pruning_curve
from prune.tuning.layers import groups_before, layer_groups
from prune.tuning.report import comparison_table, trial_line
from prune.tuning.search import TrialRecord, best_of, import_optuna, search
from prune.tuning.space import AGGREGATE, SearchSpace, base_params

log = logging.getLogger(__name__)

RESULTS = "tune_results.json"
COMPOSITE = "tuned_lrp.yaml"

#: the allowed values of ``tune.*`` (``tune.space`` is checked by :class:`SearchSpace`)
TUNE_CHECKS: dict[str, Check] = {
    "n_trials": int_at_least(1),
    "sampler_seed": integer(),
    "target": choice("heads", "neurons"),
    "checkpoint": Check(
        "the path of a dense model's .ckpt file, or null",
        lambda v: isinstance(v, str) and bool(v),
        nullable=True,
    ),
    "val_images": int_at_least(1, nullable=True),
}

#: why a group that runs before every scored unit is not searched
BEFORE_UNITS = (
    "its layers run before every unit the criterion scores, so no rule there can change a score"
)


def check_tune(cfg: DictConfig) -> None:
    """Every value a tuning run can get wrong, before any work: one line naming key and value.

    The search's own keys come first (``tune.n_trials``, ``tune.target``, ...), then the run's
    config as ``train.py`` checks it, then what the search needs of it: a transformer composite
    to vary (``lrp=attnlrp`` or ``cp_lrp``), a criterion that ranks by relevance, a validation
    split to measure the objective on, Optuna, and a folder without an earlier search.
    """
    if not isinstance(OmegaConf.select(cfg, "tune"), DictConfig):
        raise ConfigError("tune is not set; tuning runs take conf/tune.yaml (python tune.py)")
    check_keys(cfg, "tune.", TUNE_CHECKS)
    checkpoint = get_value(cfg, "tune.checkpoint")
    if checkpoint is not None and not Path(str(checkpoint)).expanduser().is_file():
        raise FileNotFoundError(
            f"tune.checkpoint={str(checkpoint)!r} does not exist (need a dense model's .ckpt file)"
        )
    check_component(cfg, "tune.space", SearchSpace, None, "search space")
    validate_config(cfg)
    lrp = find_class(cfg, "lrp", Composite, "lrp", "LRP composite")
    if lrp is None or not issubclass(lrp, (AttnLRP, CPLRP)):
        raise ConfigError(
            f"lrp._target_={get_value(cfg, 'lrp._target_')!r} cannot be tuned: the search varies "
            "the linear layers' rules of a transformer composite; choose lrp=attnlrp or cp_lrp "
            "(python tune.py +experiment=mnist_vit_fewshot sets up the ViT few-shot run)"
        )
    criterion = find_class(cfg, "pruner.criterion", Criterion, "pruner", "pruning criterion")
    if criterion is None or not issubclass(criterion, LRPCriterion):
        what = "pruner=null prunes nothing"
        if criterion is not None:
            what = f"pruner.criterion {criterion.__name__} does not rank by relevance"
        raise ConfigError(
            f"{what}, so no LRP rule changes what is pruned; choose pruner=lrp_conserved, lrp "
            "or lrp_signed"
        )
    if not get_value(cfg, "data.val_size"):
        raise ConfigError(
            "data.val_size=0 leaves no validation split, and the search measures its objective "
            "there (never on the test split); set data.val_size to a count or a fraction > 0"
        )
    import_optuna()
    found = Path(str(cfg.paths.output_dir)) / RESULTS
    if found.exists() and not cfg.get("overwrite"):
        raise ConfigError(
            f"{str(found)!r} holds an earlier search; use another hydra.run.dir, or "
            "overwrite=true to write over it"
        )


def tune(cfg: DictConfig) -> dict[str, Any]:
    """Search, then measure the best and the default composite on the test split.

    The dense model comes from ``tune.checkpoint`` or is trained once (``trainer``, with its
    checkpoints under ``checkpoints/dense``). Every trial prunes a copy of it without
    fine-tuning, as ``experiment/mnist_vit_fewshot`` does, and its value is the area under
    accuracy vs ratio on the validation split. ``tune_results.json`` is written at the start
    and after every trial.

    Returns:
        The contents of ``tune_results.json``.
    """
    check_tune(cfg)  # before any work
    run = TuningRun(cfg)
    run.write()
    run.load_dense()
    default = run.default_params()
    records = search(
        lambda params: run.curve(params, run.val).area,
        run.space,
        run.searched,
        int(cfg.tune.n_trials),
        int(cfg.tune.sampler_seed),
        first=default if run.space.contains(default) else None,
        after_trial=run.after_trial,
    )
    return run.finish(records, default)


class TuningRun:
    """One tuning run's pieces, built from its config before the dense model is trained."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.started = cfg, time.perf_counter()
        self.out = Path(cfg.paths.output_dir)
        keep_freed_memory(cfg.get("keep_freed_memory", True))
        threads = apply_threads(cfg.get("threads", "auto"))
        L.seed_everything(int(cfg.seed), workers=True)
        self.space: SearchSpace = instantiate(cfg.tune.space)
        self.dm = dm = build_datamodule(cfg)
        self.module = build_module(cfg, dm)
        self.base = build_composite(cfg, dm)
        self.pruner = self.make_pruner(None)
        validate_run(cfg, dm, self.module, self.pruner)
        net, example = self.module.net, torch.zeros(1, *dm.in_shape)
        layers = layer_groups(net, self.space.groups)
        fixed = groups_before(net, example, layers, self.pruner.record_names(net, example))
        self.searched = [group for group in layers if group not in fixed]
        if not self.searched:
            raise ConfigError(
                f"tune.space.groups leaves nothing to search: in every group {BEFORE_UNITS}"
            )
        self.layers = {group: layers[group] for group in self.searched}
        # gamma, z+ and alpha-beta are stabilised as AttnLRP stabilises its gamma rule
        self.stabilizer = float(cfg.lrp.get("epsilon", 1e-6))
        gpu = trainer_uses_gpu(cfg)
        self.device = torch.device("cuda" if gpu else "cpu")
        self.explain = explain_with(
            instantiate(cfg.relevance), dm.relevance_dataloader(), "gpu" if gpu else "cpu"
        )
        val_images = min(int(cfg.tune.val_images or len(dm.val_set)), len(dm.val_set))
        self.val = batches_of(dm.val_set.x, dm.val_set.y, dm.eval_batch_size, val_images)
        self.test = batches_of(dm.test_set.x, dm.test_set.y, dm.eval_batch_size)
        self.results: dict[str, Any] = {
            "config": OmegaConf.to_container(cfg, resolve=True),
            "status": "running",
            "data": dm.describe(),
            "threads": threads,
            "objective": {
                "metric": "val/auc_pruned",
                "split": "val",
                "val_images": val_images,
                "test_images": len(dm.test_set),
                "reference_images": len(dm.relevance_indices()),
                "reference_set": dm.relevance_set,
                "target": self.pruner.target,
                "rounds": self.pruner.rounds,
                "ratio": self.pruner.ratio_at(self.pruner.rounds, self.pruner.total(net, example)),
            },
            "groups": {"searched": self.layers, "fixed": dict.fromkeys(fixed, BEFORE_UNITS)},
            "dense": {"checkpoint": None},
            "trials": [],
        }

    def write(self) -> None:
        """``tune_results.json`` as it stands (atomically)."""
        write_results(self.out / RESULTS, self.results)

    def make_pruner(self, aggregate: str | None) -> Pruner:
        """The run's pruner on ``tune.target``, its criterion summing relevance by ``aggregate``
        (None: as configured)."""
        criterion = {} if aggregate is None else {"criterion": {"aggregate": aggregate}}
        return instantiate(self.cfg.pruner, target=str(self.cfg.tune.target), **criterion)

    def load_dense(self) -> None:
        """Load the dense weights of ``tune.checkpoint``, or train the model once (the best
        epoch's weights by ``val/acc``, as a training run keeps them)."""
        cfg, module = self.cfg, self.module
        path = cfg.tune.get("checkpoint")
        if path:
            ckpt = check_checkpoint_fits(str(path), module, key="tune.checkpoint")
            module.load_state_dict(ckpt["state_dict"])
            log.info("dense model: %s", path)
        else:
            trainer = make_trainer(cfg, version="dense")
            trainer.fit(module, datamodule=self.dm)
            path = best_checkpoint(trainer)
            if path:
                module.load_state_dict(load_checkpoint(path, key="checkpoint")["state_dict"])
                log.info("dense model trained: %s (tune.checkpoint=%s starts from it)", path, path)
        self.results["dense"] = {"checkpoint": path and str(path)}
        self.write()

    def default_params(self) -> dict[str, Any]:
        """The parameters of the run's own composite and criterion."""
        gamma = self.cfg.lrp.get("gamma")
        aggregate = self.pruner.criterion.aggregate
        return base_params(self.searched, self.stabilizer, gamma, aggregate)

    def curve(self, params: dict[str, Any], batches: Batches) -> Curve:
        """The pruning curve on ``batches`` with the composite and aggregate of ``params``."""
        composite = GroupRules(self.base, self.layers, self.space.rules_of(params, self.stabilizer))
        pruner = self.make_pruner(params[AGGREGATE])
        return pruning_curve(self.module, pruner, composite, self.explain, batches, self.device)

    def default_curve(self, batches: Batches) -> Curve:
        """The pruning curve on ``batches`` with the run's own composite and pruner."""
        return pruning_curve(
            self.module, self.pruner, self.base, self.explain, batches, self.device
        )

    def after_trial(self, record: TrialRecord, records: list[TrialRecord]) -> None:
        """The trial's line on the console; every trial so far into ``tune_results.json``."""
        best = max((r.value for r in records if r.value is not None), default=None)
        log.info("%s", trial_line(record, int(self.cfg.tune.n_trials), best, self.searched))
        self.results["trials"] = [r.to_dict() for r in records]
        self.write()

    def finish(self, records: list[TrialRecord], default: dict[str, Any]) -> dict[str, Any]:
        """The best trial and the default composite, each measured once on the test split;
        their table on the console; complete."""
        best = best_of(records)
        best_test = self.curve(best.params, self.test)
        first = records[0]  # the default composite, when the space could choose it
        default_val = first.value if first.params == default else None
        if default_val is None:
            default_val = self.default_curve(self.val).area
        default_test = self.default_curve(self.test)
        results = self.results
        results["best"] = {
            "trial": best.number,
            "params": best.params,
            "val/auc_pruned": best.value,
            "test/auc_pruned": best_test.area,
            "test/curve": best_test.to_dict(),
            "lrp": self.composite_config(best.params),
        }
        results["default"] = {
            "params": default,
            "val/auc_pruned": default_val,
            "test/auc_pruned": default_test.area,
            "test/curve": default_test.to_dict(),
        }
        results["status"] = "complete"
        results["wall_s"] = time.perf_counter() - self.started
        self.write()
        self.write_composite(best)
        show(comparison_table(results, title="LRP composite for pruning: best against default"), [])
        log.info("results: %s", self.out / RESULTS)
        return results

    def composite_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The composite of ``params`` as an ``lrp`` config (:func:`group_rules_config`)."""
        base = OmegaConf.to_container(self.cfg.lrp, resolve=True)
        return group_rules_config(base, self.layers, self.space.rules_of(params, self.stabilizer))

    def write_composite(self, best: TrialRecord) -> None:
        """The best composite as a config file to copy to ``conf/lrp/`` (``tuned_lrp.yaml``)."""
        path = self.out / COMPOSITE
        aggregate = best.params[AGGREGATE]
        use = f"python train.py <experiment> lrp=<name> pruner.criterion.aggregate={aggregate}"
        header = f"# The best composite of trial #{best.number} of {self.out}: copy it to\n"
        header += f"# conf/lrp/<name>.yaml, then {use}\n"
        write_text(path, header + OmegaConf.to_yaml(self.composite_config(best.params)))
        log.info("best composite: %s (copy to conf/lrp/<name>.yaml; %s)", path, use)
