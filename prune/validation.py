"""Check a run's configuration before any work: one-line errors naming key, value, allowed set.

:func:`validate_config` looks only at the composed config (no data is read, no model is
built), so a bad sweep job or command-line override stops within a second, before anything is
written. :func:`validate_run` runs right after the datamodule and the model are built and
before training: the checks that need them (``pruner.keep`` against the number of inputs or
units, input pruning of a model it cannot apply to, a relevance set larger than its split, a
``ckpt_path`` of another model). Both raise :class:`ConfigError` (a ``ValueError``) or
``FileNotFoundError``, which ``prune.entry.run`` turns into ``error: ...`` and exit status 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from prune.checkpoint import check_checkpoint_fits
from prune.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
RELEVANCE_TARGETS = ("label", "prediction")
RELEVANCE_OUTPUTS = ("logit", "one", "softmax")
PRUNE_TARGETS = ("units", "inputs")
RELEVANCE_SETS = ("train", "val")
#: composites whose first-layer rule ignores the pixel values (every pixel scores the same)
FLAT_FIRST_LAYER = ("EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat")


# -- small helpers -----------------------------------------------------------------------------
def _options(group: str) -> list[str]:
    """Names selectable for a config group (``conf/<group>/*.yaml``)."""
    folder = CONF / group
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")


def _has(node: Any, key: str) -> bool:
    return isinstance(node, DictConfig) and key in node.keys()  # noqa: SIM118 (``in`` is False for "???")


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at dotted ``key`` (None when absent); '???' raises a ConfigError."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent.keys():  # noqa: SIM118
        return None
    if OmegaConf.is_missing(parent, leaf):
        raise ConfigError(f"{key} is required but not set (add {key}=... to the command line)")
    value = parent[leaf]
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_at_least(cfg: DictConfig, key: str, low: int, nullable: bool = False) -> None:
    value = _value(cfg, key)
    if value is None and (nullable or not _present(cfg, key)):
        return
    if not _is_int(value) or value < low:
        allowed = f"an integer >= {low}" + (" or null" if nullable else "")
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def _present(cfg: DictConfig, key: str) -> bool:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    return isinstance(parent, DictConfig) and leaf in parent.keys()  # noqa: SIM118


def _choice(cfg: DictConfig, key: str, allowed: Sequence[Any]) -> None:
    value = _value(cfg, key)
    if _present(cfg, key) and value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")


def _nonneg_number(cfg: DictConfig, key: str) -> None:
    value = _value(cfg, key)
    if value is None:
        return
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a finite number >= 0, got {value!r}")


def _class(cfg: DictConfig, key: str, base: type, group: str | None, what: str) -> type | None:
    """Import the class named by ``<key>`` (a ``_target_``) and check it is a ``base``."""
    target = _value(cfg, key)
    if target is None:
        return None
    choose = "use an importable class path"
    if group:
        choose = f"choose {group}=<one of {_options(group)}>"
    try:
        cls = get_class(str(target))
    except Exception:
        raise ConfigError(f"{key}={target!r} is not a known {what} class; {choose}") from None
    if not issubclass(cls, base):
        raise ConfigError(
            f"{key}={target!r} is not a {what} (a subclass of {base.__module__}.{base.__name__}); "
            f"{choose}"
        )
    return cls


# -- the config alone --------------------------------------------------------------------------
def validate_config(cfg: DictConfig) -> None:
    """Check every value of a train or evaluate config that can be wrong, before any work.

    Raises:
        ConfigError: naming the key, the bad value and what is allowed.
        FileNotFoundError: for a ``ckpt_path``, ``data.path`` or data root that does not exist.
    """
    _check_top(cfg)
    _check_trainer(cfg)
    if _has(cfg, "data"):
        _check_data(cfg)
    if _has(cfg, "model"):
        _check_model(cfg)
    composite = _check_lrp(cfg) if _has(cfg, "lrp") else None
    if _has(cfg, "relevance"):
        _choice(cfg, "relevance.target", RELEVANCE_TARGETS)
        _choice(cfg, "relevance.output", RELEVANCE_OUTPUTS)
    if _has(cfg, "measure"):
        batches = _value(cfg, "measure.latency_batches")
        if batches is not None and (
            not isinstance(batches, list) or not all(_is_int(b) and b >= 1 for b in batches)
        ):
            raise ConfigError(
                f"measure.latency_batches must be a list of integers >= 1, got {batches!r}"
            )
        _int_at_least(cfg, "measure.latency_repeats", 1)
    if cfg.get("pruner") is not None:
        _check_pruner(cfg, composite)


def _check_top(cfg: DictConfig) -> None:
    seed = _value(cfg, "seed")
    if _present(cfg, "seed") and not _is_int(seed):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    _int_at_least(cfg, "retrain.max_epochs", 0, nullable=True)
    resume = _value(cfg, "resume")
    if resume is not None and not isinstance(resume, bool):
        raise ConfigError(f"resume must be true or false, got {resume!r}")
    if _present(cfg, "ckpt_path"):
        ckpt = _value(cfg, "ckpt_path")  # '???' (evaluate) raises "required" here
        if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
            raise FileNotFoundError(f"ckpt_path={str(ckpt)!r} does not exist (need a .ckpt file)")
    if resume:
        results = Path(str(_value(cfg, "paths.output_dir"))) / "results.json"
        if not results.is_file():
            raise FileNotFoundError(
                f"resume=true but {str(results)!r} does not exist; point hydra.run.dir at the "
                "folder of the run to resume"
            )


def _check_trainer(cfg: DictConfig) -> None:
    if not _has(cfg, "trainer"):
        return
    _int_at_least(cfg, "trainer.max_epochs", 0)
    _int_at_least(cfg, "trainer.min_epochs", 0, nullable=True)
    _int_at_least(cfg, "trainer.num_nodes", 1)
    _int_at_least(cfg, "trainer.check_val_every_n_epoch", 1, nullable=True)
    _int_at_least(cfg, "trainer.log_every_n_steps", 1)
    _choice(cfg, "trainer.accelerator", ACCELERATORS)
    devices = _value(cfg, "trainer.devices")
    ok = devices == "auto" or (_is_int(devices) and (devices >= 1 or devices == -1))
    ok = ok or (isinstance(devices, list) and all(_is_int(d) and d >= 0 for d in devices))
    ok = ok or (isinstance(devices, str) and devices.strip("-").isdigit())
    if _present(cfg, "trainer.devices") and not ok:
        raise ConfigError(
            f"trainer.devices must be an integer >= 1, -1 (all), 'auto' or a list of device "
            f"indices, got {devices!r}"
        )
    if _present(cfg, "trainer.precision"):
        from lightning.fabric.connector import _PRECISION_INPUT

        allowed = [a for part in get_args(_PRECISION_INPUT) for a in get_args(part)]
        precision = _value(cfg, "trainer.precision")
        if precision not in allowed:
            raise ConfigError(f"trainer.precision must be one of {allowed}, got {precision!r}")
    for stage in ("train", "val", "test"):
        key = f"trainer.limit_{stage}_batches"
        value = _value(cfg, key)
        if value is None:
            continue
        bad = not _is_number(value) or value < 0 or (isinstance(value, float) and value > 1)
        if bad:
            raise ConfigError(
                f"{key} must be a fraction in [0.0, 1.0] or a number of batches >= 0, got {value!r}"
            )


def _check_data(cfg: DictConfig) -> None:
    from prune.data.base import TensorDataModule

    cls = _class(cfg, "data._target_", TensorDataModule, "data", "dataset")
    _int_at_least(cfg, "data.batch_size", 1)
    _int_at_least(cfg, "data.eval_batch_size", 1)
    _int_at_least(cfg, "data.num_workers", 0)
    _int_at_least(cfg, "data.seed", 0)
    _int_at_least(cfg, "data.relevance_per_class", 1, nullable=True)
    _choice(cfg, "data.relevance_set", RELEVANCE_SETS)
    val_size = _value(cfg, "data.val_size")
    if val_size is not None and (
        not _is_number(val_size)
        or val_size < 0
        or (isinstance(val_size, float) and val_size >= 1 and val_size != int(val_size))
    ):
        raise ConfigError(
            f"data.val_size must be a fraction in [0, 1) or a count >= 0, got {val_size!r}"
        )
    fraction = _value(cfg, "data.relevance_fraction")
    if fraction is not None and (not _is_number(fraction) or not 0 < fraction <= 1):
        raise ConfigError(f"data.relevance_fraction must be in (0, 1], got {fraction!r}")
    for key in ("data.num_train", "data.num_test"):
        _int_at_least(cfg, key, 1)
    _int_at_least(cfg, "data.num_classes", 2)
    for key in ("data.mean", "data.std"):
        value = _value(cfg, key)
        if value is not None and (
            not isinstance(value, list) or not value or not all(_is_number(v) for v in value)
        ):
            raise ConfigError(
                f"{key} must be a list of numbers (one per channel) or null, got {value!r}"
            )
    std = _value(cfg, "data.std")
    if isinstance(std, list) and any(s <= 0 for s in std):
        raise ConfigError(f"data.std must be > 0 per channel, got {std!r}")
    if _present(cfg, "data.path"):
        path = _value(cfg, "data.path")  # '???' raises "required"
        if path is None or str(path) == "":
            raise ConfigError("data.path must name an .npz file with arrays 'x' and 'y'")
        if not Path(str(path)).expanduser().is_file():
            raise FileNotFoundError(f"data.path={str(path)!r} does not exist (need an .npz file)")
    if cls is not None and _present(cfg, "data.allow_fallback"):
        _check_data_root(cfg, cls)


def _check_data_root(cfg: DictConfig, cls: type) -> None:
    from prune.data.mnist import resolve_root

    fallback = bool(_value(cfg, "data.allow_fallback")) and bool(getattr(cls, "fallback", False))
    download = bool(_value(cfg, "data.download"))
    root = resolve_root(_value(cfg, "data.root"))
    if not fallback and not download and not root.is_dir():
        raise FileNotFoundError(
            f"data.root={str(root)!r} does not exist and data.allow_fallback=false, "
            "data.download=false: set data.root (or LRP_PRUNE_DATA) to an existing folder"
        )


def _check_model(cfg: DictConfig) -> None:
    from torch import nn

    _class(cfg, "model.net._target_", nn.Module, "model", "model")
    if _has(cfg.model, "optimizer") and cfg.model.optimizer is not None:
        import torch

        _class(cfg, "model.optimizer._target_", torch.optim.Optimizer, None, "optimizer")
        lr = _value(cfg, "model.optimizer.lr")
        if lr is not None and (not _is_number(lr) or not lr > 0 or not math.isfinite(lr)):
            raise ConfigError(f"model.optimizer.lr must be a finite number > 0, got {lr!r}")
    hidden = _value(cfg, "model.net.hidden")
    widths = hidden if isinstance(hidden, list) else [hidden]
    if hidden is not None and (not widths or not all(_is_int(h) and h >= 1 for h in widths)):
        raise ConfigError(
            f"model.net.hidden must be an integer >= 1 or a non-empty list of them, got {hidden!r}"
        )
    dropout = _value(cfg, "model.net.dropout")
    if dropout is not None and (not _is_number(dropout) or not 0 <= dropout < 1):
        raise ConfigError(f"model.net.dropout must be in [0, 1), got {dropout!r}")


def _check_lrp(cfg: DictConfig) -> type | None:
    if cfg.get("lrp") is None:
        return None
    from prune.lrp.composites import Composite

    cls = _class(cfg, "lrp._target_", Composite, "lrp", "LRP composite")
    for key in ("epsilon", "stabilizer", "gamma"):
        _nonneg_number(cfg, f"lrp.{key}")
    low, high = _value(cfg, "lrp.low"), _value(cfg, "lrp.high")
    ordered = _is_number(low) and _is_number(high) and low < high
    if low is not None and high is not None and not ordered:
        raise ConfigError(f"lrp.low must be below lrp.high, got low={low!r}, high={high!r}")
    return cls


def _check_pruner(cfg: DictConfig, composite: type | None) -> None:
    from prune.pruning.criteria.base import Criterion
    from prune.pruning.pruner import Pruner
    from prune.pruning.schedule import SCHEDULES

    _class(cfg, "pruner._target_", Pruner, None, "pruner")
    if not _has(cfg.pruner, "criterion") or cfg.pruner.criterion is None:
        raise ConfigError(
            f"pruner.criterion is not set; choose pruner=<one of {_options('pruner')}>"
        )
    criterion = _class(cfg, "pruner.criterion._target_", Criterion, "pruner", "pruning criterion")
    _choice(cfg, "pruner.target", PRUNE_TARGETS)
    target = _value(cfg, "pruner.target") or "units"
    if criterion is not None and target not in criterion.targets:
        raise ConfigError(
            f"pruner.target={target!r} cannot be scored by {criterion.__name__}; it scores "
            f"{sorted(criterion.targets)}"
        )
    ratio, keep = _value(cfg, "pruner.ratio"), _value(cfg, "pruner.keep")
    if ratio is not None and (not _is_number(ratio) or not 0 <= ratio < 1):
        raise ConfigError(f"pruner.ratio must be in [0, 1) (fraction removed), got {ratio!r}")
    if keep is not None and (not _is_int(keep) or keep < 1):
        raise ConfigError(
            f"pruner.keep must be an integer >= 1 (number kept) or null, got {keep!r}"
        )
    if ratio is None and keep is None:
        raise ConfigError("pruner.ratio and pruner.keep are both null; set one of them")
    _int_at_least(cfg, "pruner.rounds", 1)
    _int_at_least(cfg, "pruner.min_width", 1)
    _choice(cfg, "pruner.schedule", sorted(SCHEDULES))
    ranking = _value(cfg, "pruner.global_ranking")
    if ranking is not None and not isinstance(ranking, bool):
        raise ConfigError(f"pruner.global_ranking must be true or false, got {ranking!r}")
    if criterion is not None and "relevance" in criterion.requires:
        if cfg.get("lrp") is None:
            raise ConfigError(
                f"pruner.criterion {criterion.__name__} needs relevance statistics, but lrp=null "
                f"(the run computes none); choose lrp=<one of {_options('lrp')}>"
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
        if "relevance" in pruner.requires:
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
