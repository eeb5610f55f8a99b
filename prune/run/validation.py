"""Check a run's configuration before any work: one-line errors naming key, value, allowed set.

:func:`validate_config` looks only at the composed config (no data is read, no model is
built), so a bad sweep job or command-line override stops within a second, before anything is
written. :func:`validate_run` runs right after the datamodule and the model are built and
before training: the checks that need them (``pruner.keep`` against the number of inputs or
units, input pruning of a model it cannot apply to, a relevance set larger than its split, a
``ckpt_path`` of another model). Both raise :class:`ConfigError` (a ``ValueError``) or
``FileNotFoundError``, which ``prune.run.entry.run`` turns into ``error: ...`` and exit status 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, get_args

import torch
from omegaconf import DictConfig, OmegaConf

from prune.callbacks.relevance import OUTPUTS as RELEVANCE_OUTPUTS
from prune.callbacks.relevance import TARGETS as RELEVANCE_TARGETS
from prune.errors import ConfigError
from prune.run.checkpoint import check_checkpoint_fits
from prune.run.config_keys import (
    check_choice,
    check_class,
    check_int_at_least,
    check_nonneg_number,
    get_value,
    group_options,
    has_key,
    is_int,
    is_number,
    is_present,
)

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRUNE_TARGETS = ("units", "inputs")
RELEVANCE_SETS = ("train", "val")
#: composites whose first-layer rule ignores the pixel values (every pixel scores the same)
FLAT_FIRST_LAYER = ("EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat")


# -- the config alone --------------------------------------------------------------------------
def validate_config(cfg: DictConfig) -> None:
    """Check every value of a train or evaluate config that can be wrong, before any work.

    Raises:
        ConfigError: naming the key, the bad value and what is allowed.
        FileNotFoundError: for a ``ckpt_path``, ``data.path`` or data root that does not exist.
    """
    _check_top(cfg)
    _check_trainer(cfg)
    if has_key(cfg, "data"):
        _check_data(cfg)
    if has_key(cfg, "model"):
        _check_model(cfg)
    composite = _check_lrp(cfg) if has_key(cfg, "lrp") else None
    if has_key(cfg, "relevance"):
        check_choice(cfg, "relevance.target", RELEVANCE_TARGETS)
        check_choice(cfg, "relevance.output", RELEVANCE_OUTPUTS)
        _check_abslrp_output(cfg, composite)
    if has_key(cfg, "measure"):
        batches = get_value(cfg, "measure.latency_batches")
        if batches is not None and (
            not isinstance(batches, list) or not all(is_int(b) and b >= 1 for b in batches)
        ):
            raise ConfigError(
                f"measure.latency_batches must be a list of integers >= 1, got {batches!r}"
            )
        check_int_at_least(cfg, "measure.latency_repeats", 1)
        check_int_at_least(cfg, "measure.latency_threads", 1, nullable=True)
        _check_latency_devices(cfg)
    if cfg.get("pruner") is not None:
        _check_pruner(cfg, composite)


def _check_latency_devices(cfg: DictConfig) -> None:
    devices = get_value(cfg, "measure.latency_devices")
    if devices is None or devices == "auto":
        return
    allowed = ("cpu", "cuda")
    if not isinstance(devices, list) or not devices or any(d not in allowed for d in devices):
        raise ConfigError(
            f"measure.latency_devices must be 'auto' or a non-empty list of {allowed}, "
            f"got {devices!r}"
        )
    if "cuda" in devices and not torch.cuda.is_available():
        raise ConfigError(
            "measure.latency_devices names 'cuda', but this machine has no GPU: use [cpu] or auto"
        )


def _check_top(cfg: DictConfig) -> None:
    seed = get_value(cfg, "seed")
    if is_present(cfg, "seed") and not is_int(seed):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    check_int_at_least(cfg, "retrain.max_epochs", 0, nullable=True)
    resume = get_value(cfg, "resume")
    if resume is not None and not isinstance(resume, bool):
        raise ConfigError(f"resume must be true or false, got {resume!r}")
    overwrite = get_value(cfg, "overwrite")
    if overwrite is not None and not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite must be true or false, got {overwrite!r}")
    threads = get_value(cfg, "threads")
    if is_present(cfg, "threads") and threads != "auto" and not (is_int(threads) and threads >= 1):
        raise ConfigError(f"threads must be 'auto' or an integer >= 1, got {threads!r}")
    if resume and overwrite:
        raise ConfigError(
            "resume=true continues the run in the folder, overwrite=true moves it aside: "
            "set one of them"
        )
    if is_present(cfg, "ckpt_path"):
        ckpt = get_value(cfg, "ckpt_path")  # '???' (evaluate) raises "required" here
        if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
            raise FileNotFoundError(f"ckpt_path={str(ckpt)!r} does not exist (need a .ckpt file)")
    if resume:
        results = Path(str(get_value(cfg, "paths.output_dir"))) / "results.json"
        if not results.is_file():
            raise FileNotFoundError(
                f"resume=true but {str(results)!r} does not exist; point hydra.run.dir at the "
                "folder of the run to resume"
            )


def _check_trainer(cfg: DictConfig) -> None:
    if not has_key(cfg, "trainer"):
        return
    check_int_at_least(cfg, "trainer.max_epochs", 0)
    check_int_at_least(cfg, "trainer.min_epochs", 0, nullable=True)
    check_int_at_least(cfg, "trainer.num_nodes", 1)
    check_int_at_least(cfg, "trainer.check_val_every_n_epoch", 1, nullable=True)
    check_int_at_least(cfg, "trainer.log_every_n_steps", 1)
    check_choice(cfg, "trainer.accelerator", ACCELERATORS)
    devices = get_value(cfg, "trainer.devices")
    ok = devices == "auto" or (is_int(devices) and (devices >= 1 or devices == -1))
    ok = ok or (isinstance(devices, list) and all(is_int(d) and d >= 0 for d in devices))
    ok = ok or (isinstance(devices, str) and devices.strip("-").isdigit())
    if is_present(cfg, "trainer.devices") and not ok:
        raise ConfigError(
            f"trainer.devices must be an integer >= 1, -1 (all), 'auto' or a list of device "
            f"indices, got {devices!r}"
        )
    if is_present(cfg, "trainer.precision"):
        from lightning.fabric.connector import _PRECISION_INPUT

        allowed = [a for part in get_args(_PRECISION_INPUT) for a in get_args(part)]
        precision = get_value(cfg, "trainer.precision")
        if precision not in allowed:
            raise ConfigError(f"trainer.precision must be one of {allowed}, got {precision!r}")
    for stage in ("train", "val", "test"):
        key = f"trainer.limit_{stage}_batches"
        value = get_value(cfg, key)
        if value is None:
            continue
        bad = not is_number(value) or value < 0 or (isinstance(value, float) and value > 1)
        if bad:
            raise ConfigError(
                f"{key} must be a fraction in [0.0, 1.0] or a number of batches >= 0, got {value!r}"
            )


def _check_data(cfg: DictConfig) -> None:
    from prune.data.base import TensorDataModule

    cls = check_class(cfg, "data._target_", TensorDataModule, "data", "dataset")
    check_int_at_least(cfg, "data.batch_size", 1)
    check_int_at_least(cfg, "data.eval_batch_size", 1)
    check_int_at_least(cfg, "data.num_workers", 0)
    check_int_at_least(cfg, "data.seed", 0)
    check_int_at_least(cfg, "data.relevance_per_class", 1, nullable=True)
    check_choice(cfg, "data.relevance_set", RELEVANCE_SETS)
    val_size = get_value(cfg, "data.val_size")
    if val_size is not None and (
        not is_number(val_size)
        or val_size < 0
        or (isinstance(val_size, float) and val_size >= 1 and val_size != int(val_size))
    ):
        raise ConfigError(
            f"data.val_size must be a fraction in [0, 1) or a count >= 0, got {val_size!r}"
        )
    fraction = get_value(cfg, "data.relevance_fraction")
    if fraction is not None and (not is_number(fraction) or not 0 < fraction <= 1):
        raise ConfigError(f"data.relevance_fraction must be in (0, 1], got {fraction!r}")
    for key in ("data.num_train", "data.num_test"):
        check_int_at_least(cfg, key, 1)
    check_int_at_least(cfg, "data.num_classes", 2, nullable=True)  # synthetic: its own check
    for key in ("data.mean", "data.std"):
        value = get_value(cfg, key)
        if value is not None and (
            not isinstance(value, list) or not value or not all(is_number(v) for v in value)
        ):
            raise ConfigError(
                f"{key} must be a list of numbers (one per channel) or null, got {value!r}"
            )
    std = get_value(cfg, "data.std")
    if isinstance(std, list) and any(s <= 0 for s in std):
        raise ConfigError(f"data.std must be > 0 per channel, got {std!r}")
    mean = get_value(cfg, "data.mean")
    lengths = [len(v) for v in (mean, std) if isinstance(v, list) and len(v) > 1]
    if len(lengths) == 2 and lengths[0] != lengths[1]:
        raise ConfigError(
            f"data.mean has {len(mean)} entries but data.std has {len(std)}; give each one entry "
            "per channel (or one for all)"
        )
    if is_present(cfg, "data.path"):
        _check_data_path(cfg, getattr(cls, "path_kind", "file"))
    if cls is not None and is_present(cfg, "data.allow_fallback"):
        _check_data_root(cfg, cls)


def _check_data_path(cfg: DictConfig, kind: str) -> None:
    """``data.path`` names what the data class reads: a file (``.npz``) or a folder (images)."""
    path = get_value(cfg, "data.path")  # '???' raises "required"
    need = "a folder of images, one sub-folder per class" if kind == "dir" else "an .npz file"
    if path is None or str(path) == "":
        arrays = "" if kind == "dir" else " with arrays 'x' and 'y'"
        raise ConfigError(f"data.path must name {need}{arrays}")
    found = Path(str(path)).expanduser()
    if kind == "dir" and found.is_file():
        raise ConfigError(f"data.path={str(path)!r} is a file; need {need}")
    if kind != "dir" and found.is_dir():
        raise ConfigError(f"data.path={str(path)!r} is a directory; need {need}")
    if not found.exists():
        raise FileNotFoundError(f"data.path={str(path)!r} does not exist (need {need})")


def _check_data_root(cfg: DictConfig, cls: type) -> None:
    from prune.data.mnist import resolve_root

    fallback = bool(get_value(cfg, "data.allow_fallback")) and bool(getattr(cls, "fallback", False))
    download = bool(get_value(cfg, "data.download"))
    root = resolve_root(get_value(cfg, "data.root"))
    if not fallback and not download and not root.is_dir():
        raise FileNotFoundError(
            f"data.root={str(root)!r} does not exist and data.allow_fallback=false, "
            "data.download=false: set data.root (or LRP_PRUNE_DATA) to an existing folder"
        )


def _check_model(cfg: DictConfig) -> None:
    from torch import nn

    check_class(cfg, "model.net._target_", nn.Module, "model", "model")
    if has_key(cfg.model, "optimizer") and cfg.model.optimizer is not None:
        import torch

        check_class(cfg, "model.optimizer._target_", torch.optim.Optimizer, None, "optimizer")
        lr = get_value(cfg, "model.optimizer.lr")
        if lr is not None and (not is_number(lr) or not lr > 0 or not math.isfinite(lr)):
            raise ConfigError(f"model.optimizer.lr must be a finite number > 0, got {lr!r}")
    hidden = get_value(cfg, "model.net.hidden")
    widths = hidden if isinstance(hidden, list) else [hidden]
    if hidden is not None and (not widths or not all(is_int(h) and h >= 1 for h in widths)):
        raise ConfigError(
            f"model.net.hidden must be an integer >= 1 or a non-empty list of them, got {hidden!r}"
        )
    dropout = get_value(cfg, "model.net.dropout")
    if dropout is not None and (not is_number(dropout) or not 0 <= dropout < 1):
        raise ConfigError(f"model.net.dropout must be in [0, 1), got {dropout!r}")


def _check_lrp(cfg: DictConfig) -> type | None:
    if cfg.get("lrp") is None:
        return None
    from prune.lrp.composites import Composite

    cls = check_class(cfg, "lrp._target_", Composite, "lrp", "LRP composite")
    for key in ("epsilon", "stabilizer", "gamma"):
        check_nonneg_number(cfg, f"lrp.{key}")
    low, high = get_value(cfg, "lrp.low"), get_value(cfg, "lrp.high")
    ordered = is_number(low) and is_number(high) and low < high
    if low is not None and high is not None and not ordered:
        raise ConfigError(f"lrp.low must be below lrp.high, got low={low!r}, high={high!r}")
    return cls


def _check_abslrp_output(cfg: DictConfig, composite: type | None) -> None:
    """absLRP explains one class per sample; an output relevance over several classes would be
    normalised into a mix of them."""
    from prune.lrp.composites import AbsLRP

    output = get_value(cfg, "relevance.output")
    if composite is not None and issubclass(composite, AbsLRP) and output not in ("logit", "one"):
        raise ConfigError(
            f"relevance.output={output!r} puts relevance on several classes, but lrp=abslrp "
            "explains one class per sample (its contrastive map: that class against all "
            "others); use relevance.output=logit or one"
        )


def _check_pruner(cfg: DictConfig, composite: type | None) -> None:
    from prune.pruning.criteria.base import Criterion
    from prune.pruning.pruner import Pruner
    from prune.pruning.schedule import SCHEDULES

    check_class(cfg, "pruner._target_", Pruner, None, "pruner")
    if not has_key(cfg.pruner, "criterion") or cfg.pruner.criterion is None:
        raise ConfigError(
            f"pruner.criterion is not set; choose pruner=<one of {group_options('pruner')}>"
        )
    criterion = check_class(
        cfg, "pruner.criterion._target_", Criterion, "pruner", "pruning criterion"
    )
    check_choice(cfg, "pruner.target", PRUNE_TARGETS)
    target = get_value(cfg, "pruner.target") or "units"
    if criterion is not None and target not in criterion.targets:
        raise ConfigError(
            f"pruner.target={target!r} cannot be scored by {criterion.__name__}; it scores "
            f"{sorted(criterion.targets)}"
        )
    ratio, keep = get_value(cfg, "pruner.ratio"), get_value(cfg, "pruner.keep")
    if ratio is not None and (not is_number(ratio) or not 0 <= ratio < 1):
        raise ConfigError(f"pruner.ratio must be in [0, 1) (fraction removed), got {ratio!r}")
    if keep is not None and (not is_int(keep) or keep < 1):
        raise ConfigError(
            f"pruner.keep must be an integer >= 1 (number kept) or null, got {keep!r}"
        )
    if ratio is None and keep is None:
        raise ConfigError("pruner.ratio and pruner.keep are both null; set one of them")
    check_int_at_least(cfg, "pruner.rounds", 1)
    check_int_at_least(cfg, "pruner.min_width", 1)
    check_choice(cfg, "pruner.schedule", sorted(SCHEDULES))
    ranking = get_value(cfg, "pruner.global_ranking")
    if ranking is not None and not isinstance(ranking, bool):
        raise ConfigError(f"pruner.global_ranking must be true or false, got {ranking!r}")
    if criterion is not None and "stats" in criterion.needs:
        if cfg.get("lrp") is None:
            raise ConfigError(
                f"pruner.criterion {criterion.__name__} needs relevance statistics, but lrp=null "
                f"(the run computes none); choose lrp=<one of {group_options('lrp')}>"
            )
        if target == "inputs" and composite is not None and composite.__name__ in FLAT_FIRST_LAYER:
            raise ConfigError(
                f"lrp={composite.__name__} puts the flat rule on the first layer, so every input "
                "element gets the same relevance and pruner.target='inputs' cannot rank them; "
                "choose lrp=epsilon, epsilon_plus or epsilon_gamma_box"
            )


# -- after the datamodule and the model are built ---------------------------------------------
def validate_run(cfg: DictConfig, dm: Any, module: Any, pruner: Any = None) -> None:
    """Checks that need the data and the model; run before training.

    - the relevance set fits its split (``data.relevance_per_class`` per class),
    - the pruner applies to the model (``pruner.keep`` <= inputs or units, input pruning of a
      model that supports it: :meth:`prune.pruning.pruner.Pruner.validate`),
    - ``ckpt_path`` (round 0 resume) holds this model: safe load, same parameter shapes.
    """
    import torch

    if pruner is not None:
        if "stats" in pruner.needs:
            dm.relevance_indices()  # raises naming data.relevance_per_class and the class
        try:
            pruner.validate(module.net, torch.zeros(1, *dm.in_shape))
        except ValueError as err:
            if str(err).startswith("pruner."):
                raise
            model = OmegaConf.select(cfg, "model.net._target_")
            raise ConfigError(
                f"pruner.target={pruner.target!r} cannot apply to model.net._target_={model!r}: "
                f"{err}"
            ) from None  # entry.run reports the root cause: keep this message
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        check_checkpoint_fits(ckpt_path, module, training=True)
