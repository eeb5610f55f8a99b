"""Building a run's pieces from its config: datamodule, model, LRP composite, Trainer."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from prune.module import ClassifierModule
from prune.run.checkpoint import SafeCheckpointIO

#: the Trainer's batch limits; at 1.0 (all batches, Lightning's default) they are not passed on
_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches")


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


def input_bounds(mean: Tensor, std: Tensor) -> dict[str, float | Tensor]:
    """The lowest and highest input the model sees: pixels 0 and 1 normalised,
    ``(0 - mean) / std`` and ``(1 - mean) / std`` per channel.

    Args:
        mean: the data's mean per channel, ``(C, 1, 1)`` (or ``(C,)``).
        std: its std per channel, same shape.

    Returns:
        ``{"low": ..., "high": ...}``: floats when every channel has the same bounds, else
        ``(C, 1, 1)`` tensors (broadcastable to one sample ``(C, H, W)``).
    """
    mean, std = mean.double().reshape(-1, 1, 1), std.double().reshape(-1, 1, 1)
    low, high = (0.0 - mean) / std, (1.0 - mean) / std
    if bool((low == low.flatten()[0]).all() and (high == high.flatten()[0]).all()):
        return {"low": float(low.flatten()[0]), "high": float(high.flatten()[0])}
    return {"low": low.float(), "high": high.float()}


def build_composite(cfg: DictConfig, dm: Any) -> Any:
    """The LRP composite of ``cfg.lrp``.

    A composite whose constructor takes ``low`` and ``high`` (the box rule's bounds) gets them
    from the data's normalisation (:func:`input_bounds`) where the config leaves them null or
    unset; a value set in the config wins.
    """
    params = inspect.signature(get_class(cfg.lrp._target_)).parameters
    bounds = {
        key: value
        for key, value in input_bounds(dm.mean, dm.std).items()
        if key in params and cfg.lrp.get(key) is None
    }
    return instantiate(cfg.lrp, **bounds)


def trainer_uses_gpu(cfg: DictConfig) -> bool:
    """The run's Trainer may compute on a GPU: one is there and the accelerator allows it."""
    accelerator = cfg.trainer.get("accelerator")
    return torch.cuda.is_available() and accelerator in ("gpu", "cuda", "auto")


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


def accuracy_of(
    trainer: L.Trainer, module: ClassifierModule, dm: Any, ckpt: str | None = None
) -> float:
    """``test/acc`` of ``module`` (or of the checkpoint ``ckpt``) on the test split."""
    result = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)
    return float(result[0]["test/acc"])


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best checkpoint the Trainer's ModelCheckpoint saved, if any."""
    cb = trainer.checkpoint_callback
    return cb.best_model_path if cb is not None and getattr(cb, "best_model_path", "") else None
