"""The explanation step of a run (``train.py`` and ``evaluate.py``): which attribution to trust.

Builds the configured methods, scores them with :mod:`prune.evaluation` (removal, AOPC, GAE),
writes the figures, and runs remove-and-retrain, which trains fresh models with Lightning.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from prune.data.base import TensorBatchDataset, keep_batch
from prune.evaluation.explanations import evaluate_explanations
from prune.evaluation.figures import save_figure
from prune.evaluation.methods import get_methods
from prune.evaluation.roar import dataset_relevance, remove_and_retrain
from prune.module import ClassifierModule

log = logging.getLogger(__name__)


def _background(module: ClassifierModule) -> Tensor:
    """Normalised value of a black pixel, per channel."""
    return (-module.mean / module.std).flatten()


def run_explanations(
    cfg: DictConfig, module: ClassifierModule, dm: Any, out: Path, logger: Any = None
) -> dict[str, Any]:
    """Evaluate ``cfg.explanations.methods`` on the first ``num_images`` test images.

    Writes the flip-curve and heatmap figures as PNG files under ``out/explanations`` and, when a
    TensorBoard logger is given, as figures plus the markdown table as text.
    """
    ecfg = cfg.explanations
    methods = get_methods(OmegaConf.to_container(ecfg.methods, resolve=True))
    n = min(int(ecfg.num_images), len(dm.test_set))
    device = module.device
    x = module.normalize(dm.test_set.x[:n].to(device))
    y = dm.test_set.y[:n].to(device)
    res = evaluate_explanations(
        module.net,
        x,
        y,
        methods,
        fraction=float(ecfg.fraction),
        removal=ecfg.removal,
        background=_background(module).to(device),
        flip_steps=int(ecfg.flip_steps),
        gae=bool(ecfg.gae),
        gae_steps=int(ecfg.gae_steps),
        gae_samples=ecfg.gae_samples,
        batch_size=int(ecfg.batch_size),
        seed=int(cfg.seed),
    )
    figures = res.pop("figures", {}) or {}
    folder = out / "explanations"
    folder.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        save_figure(fig, folder / f"{name}.png")
        if logger is not None:
            logger.experiment.add_figure(f"explanations/{name}", fig)
    if logger is not None and "markdown" in res:
        logger.experiment.add_text("explanations/table", res["markdown"])
        logger.experiment.flush()
    if ecfg.get("roar"):
        res["roar"] = run_roar(cfg, module, dm, methods)
    log.info("explanations:\n%s", res.get("markdown", ""))
    return res


def run_roar(cfg: DictConfig, module: ClassifierModule, dm: Any, methods: dict) -> dict[str, Any]:
    """Remove-and-retrain: mask k pixels dataset-wide, train a fresh model, test it."""
    rcfg = cfg.explanations.roar
    device = module.device
    x_train = dm.train_set.x[: int(rcfg.train_images)]
    y_train = dm.train_set.y[: int(rcfg.train_images)]
    xn = module.normalize(x_train.to(device))
    names = [m for m in rcfg.methods] if rcfg.get("methods") else list(methods)
    scores = {m: dataset_relevance(methods[m], module.net, xn).cpu() for m in names if m in methods}

    def train_fn(xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor) -> float:
        net = copy.deepcopy(module.net)
        for layer in net.modules():  # a fresh model of the same architecture
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        fresh = ClassifierModule(net, optimizer=module.optimizer_factory, mean=[0.0], std=[1.0])
        train_loader = torch.utils.data.DataLoader(
            TensorBatchDataset(xtr.cpu(), ytr.cpu()),
            batch_size=dm.batch_size,
            shuffle=True,
            collate_fn=keep_batch,
        )
        trainer = L.Trainer(
            max_epochs=int(rcfg.epochs),
            accelerator=cfg.trainer.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(fresh, train_dataloaders=train_loader)
        fresh.eval()
        with torch.no_grad():
            pred = fresh.net(xte.to(fresh.device)).argmax(1).cpu()
        return float((pred == yte.cpu()).float().mean())

    return remove_and_retrain(
        scores,
        xn.cpu(),
        y_train,
        module.normalize(dm.test_set.x.to(device)).cpu(),
        dm.test_set.y,
        train_fn,
        ks=list(rcfg.ks),
        fill=_background(module).cpu(),
        seed=int(cfg.seed),
    )
