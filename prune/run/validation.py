"""Check a run's configuration before any work: one-line errors naming key, value, allowed set.

:func:`validate_config` looks only at the composed config (no data is read, no model is
built), so a bad sweep job or command-line override stops within a second, before anything is
written. Each component (datamodule, model, composite, pruner, criterion, the relevance, measure
and explanation steps) is checked by what its class declares next to its constructor
(``config_checks``, :mod:`prune.checks`); here are only the run's own keys (``seed``,
``trainer``, ...) and the checks that tie components together. :func:`validate_run` runs right
after the datamodule and the model are built and before training: the checks that need them
(``pruner.keep`` against the number of inputs or units, input pruning of a model it cannot apply
to, a relevance set larger than its split, a ``ckpt_path`` of another model). Both raise
:class:`ConfigError` (a ``ValueError``) or ``FileNotFoundError``, which ``prune.run.entry.run``
turns into ``error: ...`` and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, get_args

import torch
from lightning.fabric.connector import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf
from torch import nn

from prune.callbacks.relevance import RelevanceAccumulator
from prune.checks import (
    Check,
    boolean,
    choice,
    finite_number,
    int_at_least,
    integer,
    is_int,
    is_number,
)
from prune.data.base import TensorDataModule
from prune.errors import ConfigError
from prune.evaluation.cost import Measure
from prune.evaluation.methods import get_methods
from prune.lrp.composites import AbsLRP, Composite
from prune.pruning.criteria.base import Criterion
from prune.pruning.pruner import Pruner, scored_targets
from prune.run.checkpoint import check_checkpoint_fits, check_finite
from prune.run.config_keys import (
    argument_names,
    check_component,
    check_keys,
    check_names,
    find_class,
    get_value,
    group_options,
)
from prune.run.explanations import Explanations

#: composites whose first-layer rule ignores the pixel values (every pixel scores the same)
FLAT_FIRST_LAYER = ("EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat")


class Slot(NamedTuple):
    """Where a component sits in the config, the class it must be, and how messages name it."""

    key: str
    base: type
    group: str | None
    what: str


#: the run's components, checked in this order
SLOTS = (
    Slot("data", TensorDataModule, "data", "dataset"),
    Slot("model.net", nn.Module, "model", "model"),
    Slot("lrp", Composite, "lrp", "LRP composite"),
    Slot("relevance", RelevanceAccumulator, None, "relevance accumulator"),
    Slot("measure", Measure, None, "measure step"),
    Slot("explanations", Explanations, None, "explanation step"),
    Slot("pruner", Pruner, None, "pruner"),
)

TOP_CHECKS = {
    "seed": integer(),
    "resume": boolean(nullable=True),
    "overwrite": boolean(nullable=True),
    "threads": Check("'auto' or an integer >= 1", lambda v: v == "auto" or (is_int(v) and v >= 1)),
    "use_checkpoint_config": boolean(),
    "keep_freed_memory": boolean(),
}

_PRECISIONS = [a for part in get_args(_PRECISION_INPUT) for a in get_args(part)]
_BATCHES = Check(
    "a fraction in [0.0, 1.0] or a number of batches >= 0",
    lambda v: is_number(v) and v >= 0 and not (isinstance(v, float) and v > 1),
    nullable=True,
)
TRAINER_CHECKS = {
    "max_epochs": int_at_least(0),
    "min_epochs": int_at_least(0, nullable=True),
    "num_nodes": int_at_least(1),
    "check_val_every_n_epoch": int_at_least(1, nullable=True),
    "log_every_n_steps": int_at_least(1),
    "accelerator": choice("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "devices": Check(
        "an integer >= 1, -1 (all), 'auto' or a list of device indices",
        lambda v: (
            v == "auto"
            or (is_int(v) and (v >= 1 or v == -1))
            or (isinstance(v, list) and all(is_int(d) and d >= 0 for d in v))
            or (isinstance(v, str) and v.strip("-").isdigit())
        ),
    ),
    "precision": Check(f"one of {_PRECISIONS}", lambda v: v in _PRECISIONS),
    "limit_train_batches": _BATCHES,
    "limit_val_batches": _BATCHES,
    "limit_test_batches": _BATCHES,
}


# -- the config alone --------------------------------------------------------------------------
def validate_config(cfg: DictConfig) -> None:
    """Check every value of a train or evaluate config that can be wrong, before any work.

    Raises:
        ConfigError: naming the key, the bad value and what is allowed.
        FileNotFoundError: for a ``ckpt_path``, ``data.path`` or data root that does not exist.
    """
    check_keys(cfg, "", TOP_CHECKS)
    check_keys(cfg, "retrain.", {"max_epochs": int_at_least(0, nullable=True)})
    _check_run_files(cfg)
    check_keys(cfg, "trainer.", TRAINER_CHECKS)
    classes = {slot.key: check_component(cfg, *slot) for slot in SLOTS}
    _check_optimizer_and_schedulers(cfg)
    _check_abslrp_output(cfg, classes["lrp"])
    if classes["pruner"] is not None:
        _check_pruner(cfg, classes["lrp"])


def _check_run_files(cfg: DictConfig) -> None:
    """``resume`` or ``overwrite``; ``ckpt_path`` or ``dense_ckpt`` (not both) exists; a resumed
    run has its results."""
    resume, overwrite = get_value(cfg, "resume"), get_value(cfg, "overwrite")
    if resume and overwrite:
        raise ConfigError(
            "resume=true continues the run in the folder, overwrite=true moves it aside: "
            "set one of them"
        )
    given = []
    for key in ("ckpt_path", "dense_ckpt"):  # a checkpoint to continue from, or to take as is
        path = get_value(cfg, key)  # '???' (evaluate's ckpt_path) raises "required" here
        if path is None:
            continue
        if given:
            raise ConfigError(
                "ckpt_path continues the dense training, dense_ckpt takes the dense model as it "
                "is: set one of them"
            )
        if not Path(str(path)).expanduser().is_file():
            raise FileNotFoundError(f"{key}={str(path)!r} does not exist (need a .ckpt file)")
        given.append(key)
    if resume:
        results = Path(str(get_value(cfg, "paths.output_dir"))) / "results.json"
        if not results.is_file():
            raise FileNotFoundError(
                f"resume=true but {str(results)!r} does not exist; point hydra.run.dir at the "
                "folder of the run to resume"
            )


def _check_optimizer_and_schedulers(cfg: DictConfig) -> None:
    """``model.optimizer`` is a torch optimizer with a finite learning rate > 0; the schedulers
    (``model.scheduler``, ``retrain.scheduler``) are torch's; each sets only its arguments."""
    slots = (
        ("model.optimizer", torch.optim.Optimizer, "optimizer"),
        ("model.scheduler", torch.optim.lr_scheduler.LRScheduler, "learning-rate scheduler"),
        ("retrain.scheduler", torch.optim.lr_scheduler.LRScheduler, "learning-rate scheduler"),
    )
    for key, base, what in slots:
        if isinstance(OmegaConf.select(cfg, key), DictConfig):
            cls = find_class(cfg, key, base, None, what)
            if cls is not None:
                check_names(cls, argument_names(cfg, key), key)
    if isinstance(OmegaConf.select(cfg, "model.optimizer"), DictConfig):
        check_keys(cfg, "model.optimizer.", {"lr": finite_number(0, above=True)})


def _check_abslrp_output(cfg: DictConfig, composite: type | None) -> None:
    """absLRP explains one class per sample; an output relevance over several classes would be
    normalised into a mix of them."""
    output = get_value(cfg, "relevance.output")
    if composite is None or not issubclass(composite, AbsLRP) or output in (None, "logit", "one"):
        return
    raise ConfigError(
        f"relevance.output={output!r} puts relevance on several classes, but lrp=abslrp "
        "explains one class per sample (its contrastive map: that class against all "
        "others); use relevance.output=logit or one"
    )


def _check_pruner(cfg: DictConfig, composite: type | None) -> None:
    """The criterion can score the target, and gets the relevance statistics it needs."""
    if not isinstance(OmegaConf.select(cfg, "pruner.criterion"), DictConfig):
        raise ConfigError(
            f"pruner.criterion is not set; choose pruner=<one of {group_options('pruner')}>"
        )
    criterion = check_component(cfg, "pruner.criterion", Criterion, "pruner", "pruning criterion")
    target = get_value(cfg, "pruner.target") or "units"
    if target not in scored_targets(criterion.targets):
        raise ConfigError(
            f"pruner.target={target!r} cannot be scored by {criterion.__name__}; it scores "
            f"{scored_targets(criterion.targets)}"
        )
    if "stats" not in criterion.needs:
        return
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
    - ``ckpt_path`` (round 0 resume) and ``dense_ckpt`` (the dense weights) hold this model:
      safe load, same parameter shapes; ``dense_ckpt``'s weights are finite.
    """
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
    _check_methods_fit(cfg, module.net)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        check_checkpoint_fits(ckpt_path, module, training=True)
    dense = cfg.get("dense_ckpt")
    if dense:
        ckpt = check_checkpoint_fits(dense, module, key="dense_ckpt")
        check_finite(ckpt["state_dict"], "dense_ckpt", dense)


def _check_methods_fit(cfg: DictConfig, net: Any) -> None:
    """Each explanation method can explain the model (attention maps need a ViT)."""
    methods = OmegaConf.select(cfg, "explanations.methods")
    if methods is None:
        return
    names = OmegaConf.to_container(methods) if not isinstance(methods, str) else [methods]
    for method in get_methods(names).values():
        check = getattr(method, "check_model", None)
        if check is not None:
            try:
                check(net)
            except ConfigError as err:
                raise ConfigError(f"explanations.methods: {err}") from None
