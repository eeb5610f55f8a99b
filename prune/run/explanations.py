"""The explanation step of a run (``train.py`` and ``evaluate.py``): which attribution to trust.

Builds the configured methods, scores them with :mod:`prune.evaluation` (removal, AOPC, GAE),
writes the figures, and runs remove-and-retrain, which trains fresh models with Lightning.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor

from prune.checks import Check, boolean, fraction, int_at_least, is_int, is_number
from prune.data.batches import TensorBatchDataset, keep_batch
from prune.evaluation.explanations import evaluate_explanations
from prune.evaluation.figures import save_figure
from prune.evaluation.masking import REMOVALS
from prune.evaluation.methods import METHODS, get_methods
from prune.evaluation.roar import dataset_relevance, remove_and_retrain
from prune.lrp import get_composite
from prune.module import ClassifierModule
from prune.run.build import input_bounds

log = logging.getLogger(__name__)

#: every attribution method of :data:`prune.evaluation.methods.METHODS`
ALL_METHODS = (
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "lrp_epsilon",
    "lrp_epsilon_plus",
    "lrp_epsilon_plus_flat",
    "lrp_epsilon_gamma_box",
    "lrp_epsilon_alpha2_beta1",
    "lrp_epsilon_alpha2_beta1_flat",
    "abslrp",
    "abslrp_target",
)


def _known_methods(value: Any) -> bool:
    names = list(value) if isinstance(value, (list, tuple, Mapping)) else None
    return bool(names) and all(isinstance(n, str) and n in METHODS for n in names)


@dataclass(frozen=True)
class Roar:
    """Remove-and-retrain settings: ``ks`` pixels removed dataset-wide, a fresh model trained
    ``epochs`` epochs on the first ``train_images`` training images, for ``methods`` (None:
    every method of the explanation step)."""

    ks: tuple[int, ...]
    epochs: int
    train_images: int
    methods: tuple[str, ...] | None = None

    #: what a ``roar`` mapping holds (the keys of this class)
    KEYS: ClassVar[tuple[str, ...]] = ("ks", "epochs", "train_images", "methods")

    @classmethod
    def allows(cls, value: Any) -> bool:
        """``value`` is None or a mapping this class can be built from."""
        if value is None:
            return True
        if not isinstance(value, Mapping) or set(value) - set(cls.KEYS):
            return False
        ints = all(is_int(value.get(k)) and value.get(k) >= 1 for k in ("epochs", "train_images"))
        ks = value.get("ks")
        ks_ok = isinstance(ks, (list, tuple)) and bool(ks) and all(is_int(k) and k >= 1 for k in ks)
        return ints and ks_ok and (value.get("methods") is None or _known_methods(value["methods"]))


class Explanations:
    """The explanation step of a run (``explanations`` config): which attribution to trust.

    Scores ``methods`` on the first ``num_images`` test images by feature removal, pixel
    flipping (AOPC) and GAE (:func:`prune.evaluation.explanations.evaluate_explanations`),
    and optionally by remove-and-retrain (``roar``).

    Args:
        methods: names in :data:`prune.evaluation.methods.METHODS` (or name -> kwargs).
        num_images: the first N test images.
        fraction: share of pixels removed / kept in the feature-removal test, in (0, 1).
        removal: what removed pixels become: ``zero`` (black), ``mean``, ``blur`` or a number.
        flip_steps: pixel-flipping steps (AOPC over these).
        gae: compute the multi-component GAE score (absLRP paper).
        gae_steps: masking steps of GAE.
        gae_samples: images GAE is computed on (None: all ``num_images``).
        batch_size: images per batch.
        roar: remove-and-retrain, a mapping with ``ks``, ``epochs``, ``train_images`` and
            optionally ``methods`` (see :class:`Roar`); None: none.
    """

    config_checks: ClassVar[dict[str, Check]] = {
        "methods": Check(f"a non-empty list of methods of {METHODS.names()}", _known_methods),
        "num_images": int_at_least(1),
        "fraction": fraction(closed="neither"),
        "removal": Check(
            f"one of {list(REMOVALS)} or a number",
            lambda v: v in REMOVALS or is_number(v),
        ),
        "flip_steps": int_at_least(1),
        "gae": boolean(),
        "gae_steps": int_at_least(1),
        "gae_samples": int_at_least(1, nullable=True),
        "batch_size": int_at_least(1),
        "roar": Check(
            "null or a mapping {ks: [integers >= 1], epochs: integer >= 1, train_images: "
            "integer >= 1, methods: [names] or null}",
            Roar.allows,
        ),
    }

    def __init__(
        self,
        methods: Sequence[str] | Mapping[str, Any] = ALL_METHODS,
        num_images: int = 1000,
        fraction: float = 0.15,
        removal: str | float = "zero",
        flip_steps: int = 10,
        gae: bool = True,
        gae_steps: int = 10,
        gae_samples: int | None = 128,
        batch_size: int = 250,
        roar: Mapping[str, Any] | None = None,
    ) -> None:
        self.methods = dict(methods) if isinstance(methods, Mapping) else list(methods)
        self.num_images, self.fraction, self.removal = int(num_images), float(fraction), removal
        self.flip_steps, self.gae, self.gae_steps = int(flip_steps), bool(gae), int(gae_steps)
        self.gae_samples = None if gae_samples is None else int(gae_samples)
        self.batch_size = int(batch_size)
        self.roar = None
        if roar is not None:
            methods_ = roar.get("methods")
            self.roar = Roar(
                ks=tuple(int(k) for k in roar["ks"]),
                epochs=int(roar["epochs"]),
                train_images=int(roar["train_images"]),
                methods=None if methods_ is None else tuple(methods_),
            )


def _background(module: ClassifierModule) -> Tensor:
    """Normalised value of a black pixel, per channel."""
    return (-module.mean / module.std).flatten()


def with_data_bounds(methods: dict[str, Any], dm: Any) -> dict[str, Any]:
    """``methods`` with every LRP method whose named composite takes box bounds (``low``,
    ``high``) given the data's, as the run's own composite gets them (:func:`input_bounds`)."""
    out = {}
    for name, method in methods.items():
        composite = getattr(method, "composite", None)
        if isinstance(composite, str):
            params = inspect.signature(type(get_composite(composite))).parameters
            if "low" in params and "high" in params:
                method = copy.copy(method)
                method.composite = get_composite(composite, **input_bounds(dm.mean, dm.std))
        out[name] = method
    return out


def run_explanations(
    ecfg: Explanations,
    module: ClassifierModule,
    dm: Any,
    out: Path,
    logger: Any = None,
    seed: int = 0,
    accelerator: str = "auto",
) -> dict[str, Any]:
    """Evaluate ``ecfg.methods`` on the first ``ecfg.num_images`` test images.

    Writes the flip-curve and heatmap figures as PNG files under ``out/explanations`` and, when a
    TensorBoard logger is given, as figures plus the markdown table as text. ROAR trains its
    fresh models on ``accelerator``.
    """
    methods = with_data_bounds(get_methods(ecfg.methods), dm)
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
        seed=int(seed),
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
    if ecfg.roar is not None:
        res["roar"] = run_roar(ecfg.roar, module, dm, methods, seed, accelerator)
    log.info("explanations:\n%s", res.get("markdown", ""))
    return res


def run_roar(
    rcfg: Roar,
    module: ClassifierModule,
    dm: Any,
    methods: dict,
    seed: int = 0,
    accelerator: str = "auto",
) -> dict[str, Any]:
    """Remove-and-retrain: mask k pixels dataset-wide, train a fresh model, test it."""
    device = module.device
    x_train = dm.train_set.x[: int(rcfg.train_images)]
    y_train = dm.train_set.y[: int(rcfg.train_images)]
    xn = module.normalize(x_train.to(device))
    names = list(rcfg.methods) if rcfg.methods else list(methods)
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
            accelerator=accelerator,
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
        seed=int(seed),
    )
