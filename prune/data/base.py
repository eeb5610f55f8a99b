"""Tensor-backed LightningDataModule: uint8 tensors batched by indexing, normalised on device."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from prune.checks import (
    Check,
    choice,
    fraction,
    int_at_least,
    is_number,
    number_list,
)
from prune.data.augment import AUGMENTATIONS, DeviceAugment
from prune.data.batches import TensorBatchDataset, keep_batch
from prune.data.checks import _gaps, _plural, _runs, _show, check_images, check_labels
from prune.data.samplers import EvalBatchSampler, IndexBatchSampler
from prune.errors import ConfigError


def to_unit_range(x: Tensor) -> Tensor:
    """Raw images as float32 in [0, 1]: uint8 is divided by 255, float is taken as it is."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class TensorDataModule(L.LightningDataModule):
    """Base of every data source: subclasses implement ``load()``.

    ``load`` returns uint8 (or float) image tensors ``(N, C, H, W)`` and int64 labels for the
    training set and, when the source has one, the official test set. The validation split is
    taken from the training set with a seeded permutation. Batches stay uint8 until they reach
    the model's device, where ``ClassifierModule`` casts and normalises them with this
    datamodule's ``mean`` and ``std`` (which it keeps as buffers, so checkpoints carry them).

    ``setup`` checks what ``load`` returns before any training (:meth:`check_arrays`), for
    every source: finite float images (no NaN/Inf), at least one sample, one image shape for
    ``x`` and ``x_test``, one non-negative integer label per image, at least 2 classes, labels
    ``0..K-1`` with a training sample of every class (or below ``num_classes``, gaps allowed),
    test labels among those classes, and splits that are not empty: at least one image for
    training, one for test (held out: ``max(1, N // 6)``) and, unless ``val_size=0``, one for
    validation.

    With ``augment`` set, training batches (and only those: validation, test and the relevance
    pass are never augmented) go through :class:`~prune.data.augment.DeviceAugment` right after
    they reach the device, and then through the LightningModule's own
    ``on_after_batch_transfer`` (its normalisation). Without it, the datamodule adds no hook
    and the batches are untouched.

    Args:
        batch_size: training batch size (>= 1).
        eval_batch_size: batch size for validation, test and relevance passes (>= 1).
        val_size: number of training images held out for validation (>= 0), or a fraction in
            (0, 1).
        seed: seed of the train/validation split and of the relevance subset.
        mean: per-channel mean of the scaled [0, 1] images, one entry per channel or one entry
            for all channels; None computes it on the train split.
        std: per-channel std (> 0), one entry per channel or one for all; None computes it on
            the train split.
        relevance_set: which images the relevance pass explains: ``"train"`` (the training
            split) or ``"val"``.
        relevance_fraction: fraction of ``relevance_set`` used, in (0, 1].
        relevance_per_class: if set, exactly this many images per class (overrides the fraction).
        num_workers: DataLoader workers (0 is right for in-memory tensors).
        num_classes: the number of classes K (>= 2); labels must be below it and classes
            without a sample are allowed. None: K is the largest training label + 1 and every
            class ``0..K-1`` must have a training sample (a gap is an error).
        augment: augmentations of training batches on their device, a list of ``crop`` and
            ``flip`` (empty or None: none).
        crop_padding: black pixels padded on each side before the random crop.
    """

    source: str = "unknown"

    #: allowed values of the constructor arguments, checked before any data is read
    config_checks: ClassVar[dict[str, Check]] = {
        "batch_size": int_at_least(1),
        "eval_batch_size": int_at_least(1),
        "val_size": Check(
            "a fraction in [0, 1) or a count >= 0",
            lambda v: is_number(v) and v >= 0 and (v < 1 or v == int(v)),
        ),
        "seed": int_at_least(0),
        "mean": number_list("one per channel", nullable=True),
        "std": number_list("one per channel", positive=True, nullable=True),
        "relevance_set": choice("train", "val"),
        "relevance_fraction": fraction(closed="right"),
        "relevance_per_class": int_at_least(1, nullable=True),
        "num_workers": int_at_least(0),
        "num_classes": int_at_least(2, nullable=True),
        "augment": Check(
            f"a list of {list(AUGMENTATIONS)}, each at most once, or null",
            lambda v: (
                isinstance(v, (list, tuple))
                and all(n in AUGMENTATIONS for n in v)
                and len(set(v)) == len(v)
            ),
            nullable=True,
        ),
        "crop_padding": int_at_least(0),
    }

    @classmethod
    def check_config(cls, values: Mapping[str, Any], prefix: str) -> None:
        """``mean`` and ``std`` give one entry per channel (or one for all): the same count."""
        mean, std = values.get("mean"), values.get("std")
        lists = isinstance(mean, list) and isinstance(std, list)
        if lists and len(mean) > 1 and len(std) > 1 and len(mean) != len(std):
            raise ConfigError(
                f"{prefix}mean has {len(mean)} entries but {prefix}std has {len(std)}; give each "
                "one entry per channel (or one for all)"
            )
        if "crop" in (values.get("augment") or ()) and values.get("crop_padding", 4) == 0:
            raise ConfigError(f"{prefix}crop_padding must be >= 1 with {prefix}augment=[crop, ...]")

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: float = 0.1,
        seed: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        relevance_set: str = "train",
        relevance_fraction: float = 1.0,
        relevance_per_class: int | None = None,
        num_workers: int = 0,
        num_classes: int | None = None,
        augment: Sequence[str] | None = None,
        crop_padding: int = 4,
    ) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if int(value) < 1:
                raise ValueError(f"data.{key} must be an integer >= 1, got {value}")
        if val_size < 0:
            raise ValueError(f"data.val_size must be >= 0 (a count) or in (0, 1), got {val_size}")
        if relevance_set not in ("train", "val"):
            raise ValueError(f"data.relevance_set must be 'train' or 'val', got {relevance_set!r}")
        if not 0.0 < relevance_fraction <= 1.0:
            raise ValueError(f"data.relevance_fraction must be in (0, 1], got {relevance_fraction}")
        if relevance_per_class is not None and int(relevance_per_class) < 1:
            raise ValueError(
                f"data.relevance_per_class must be >= 1 or null, got {relevance_per_class}"
            )
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 2):
            raise ConfigError(
                f"data.num_classes must be an integer >= 2 or null, got {num_classes}"
            )
        for key, value in (("mean", mean), ("std", std)):
            values = None if value is None else list(value)
            numbers = values and all(isinstance(v, (int, float)) for v in values)
            if values is not None and not (numbers and all(math.isfinite(v) for v in values)):
                raise ConfigError(
                    f"data.{key} must be a non-empty list of finite numbers or null, got {values}"
                )
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.val_size, self.seed = val_size, int(seed)
        self._mean, self._std = mean, std
        self.relevance_set, self.relevance_fraction = relevance_set, float(relevance_fraction)
        self.relevance_per_class = None if relevance_per_class is None else int(relevance_per_class)
        self.num_workers = int(num_workers)
        self._num_classes = None if num_classes is None else int(num_classes)
        self.train_set: TensorBatchDataset | None = None
        self.val_set: TensorBatchDataset | None = None
        self.test_set: TensorBatchDataset | None = None
        self.augmentation = DeviceAugment(augment or (), crop_padding)
        if self.augmentation:
            # Bound on the instance, not defined on the class: Lightning calls a datamodule's
            # batch hook *instead of* the LightningModule's when the datamodule overrides it, so
            # the hook exists only when there is something to augment, and it hands the batch on
            # to the module's hook itself (both run; Lightning's warning about it is moot).
            self.on_after_batch_transfer = self._augment_then_module_hook
            warnings.filterwarnings(
                "ignore", message="You have overridden `on_after_batch_transfer` in both"
            )

    def _augment_then_module_hook(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training:
            x, y = batch
            batch = (self.augmentation(x), y)
        module = trainer.lightning_module if trainer is not None else None
        return module.on_after_batch_transfer(batch, dataloader_idx) if module else batch

    # -- to implement --------------------------------------------------------------------------
    def load(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Return ``(x_train, y_train, x_test, y_test)``; the test pair may be None."""
        raise NotImplementedError

    @property
    def origin(self) -> str:
        """How error messages name this data (subclasses name their file or folder)."""
        return f"data source {self.source!r}"

    # -- derived ------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load once, check, split train/val (seeded), hold out a test split if there is none.

        Raises:
            ValueError: for data that cannot train a classifier (:meth:`check_arrays`) or splits
                that leave an empty train, validation or test set.
        """
        if self.train_set is not None:
            return
        x, y, x_test, y_test = self.load()
        num_classes = self.check_arrays(x, y, x_test, y_test)
        gen = torch.Generator().manual_seed(self.seed)
        n_test, n_val = self._split_sizes(len(y), held_out=x_test is None)
        if x_test is None:  # no official test set: hold out 1/6 (MNIST's 10k/60k ratio)
            perm = torch.randperm(len(y), generator=gen)
            x_test, y_test = x[perm[:n_test]], y[perm[:n_test]]
            x, y = x[perm[n_test:]], y[perm[n_test:]]
        perm = torch.randperm(len(y), generator=gen)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        self.train_set = TensorBatchDataset(x[train_idx], y[train_idx])
        self.val_set = TensorBatchDataset(x[val_idx], y[val_idx])
        self.test_set = TensorBatchDataset(x_test, y_test)
        self.num_classes = num_classes
        self.in_shape = tuple(x.shape[1:])
        mean, std = self._normalisation(self.train_set.x)
        self.mean = mean.float().view(-1, 1, 1)
        self.std = std.float().view(-1, 1, 1)

    def check_arrays(
        self, x: Tensor, y: Tensor, x_test: Tensor | None, y_test: Tensor | None
    ) -> int:
        """Refuse data that cannot train a classifier; return the number of classes K.

        Args:
            x: training images ``(N, C, H, W)``, uint8 or float.
            y: training labels ``(N,)``.
            x_test: test images of the same ``(C, H, W)``, or None.
            y_test: test labels, or None (exactly when ``x_test`` is None).

        Returns:
            ``num_classes`` if set, else the largest label of ``y`` + 1.

        Raises:
            ValueError: naming :attr:`origin`, the array, the count of bad values and the fix.
        """
        where = self.origin
        if (x_test is None) != (y_test is None):
            have, lack = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
            raise ValueError(f"{where}: {have} is given without {lack}; give both or neither")
        check_images(where, "x", x)
        check_labels(where, "y", y, len(x), "x")
        if x_test is not None:
            check_images(where, "x_test", x_test)
            check_labels(where, "y_test", y_test, len(x_test), "x_test")
            if x_test.shape[1:] != x.shape[1:]:
                raise ValueError(
                    f"{where}: x_test images have shape {tuple(x_test.shape[1:])} but x images "
                    f"{tuple(x.shape[1:])}; both need one (C, H, W)"
                )
        classes = torch.unique(y)  # sorted
        if len(classes) < 2:
            raise ValueError(
                f"{where}: y has one class only ({int(classes[0])}); a classifier needs at least 2"
            )
        top = int(classes[-1])
        if self._num_classes is not None:
            k = self._num_classes
            if top >= k:
                raise ValueError(
                    f"{where}: y holds {_plural(int((y >= k).sum()), 'label')} >= "
                    f"data.num_classes={k} (max {top}); labels must be 0..{k - 1}, or raise "
                    "data.num_classes"
                )
        else:
            k = top + 1
            if len(classes) < k:
                present = classes.tolist()
                absent = "class " if k - len(classes) == 1 else "classes "
                absent += _show(_gaps(present)) + (" has" if k - len(classes) == 1 else " have")
                raise ValueError(
                    f"{where}: y has labels {{{_show(_runs(present))}}}: {absent} no sample; "
                    f"labels must be 0..K-1, or set data.num_classes={k} if the gaps are meant"
                )
        if y_test is not None and (y_test >= k).any():
            outside = y_test[y_test >= k]
            raise ValueError(
                f"{where}: y_test holds {_plural(len(outside), 'label')} outside 0..{k - 1}, the "
                f"classes of y ({{{_show(_runs(torch.unique(outside).tolist()))}}}); test labels "
                "must be classes of the training labels"
            )
        return k

    def _split_sizes(self, n: int, held_out: bool) -> tuple[int, int]:
        """``(test images held out, validation images)`` of ``n``; refuses an empty split."""
        n_test = max(1, n // 6) if held_out else 0
        rest = n - n_test
        after = f" after {n_test} held out for test" if held_out else ""
        if rest < 1:
            raise ValueError(
                f"{self.origin}: {_plural(n, 'sample')} leave none for training{after} (there is "
                "no x_test); add samples or give x_test and y_test"
            )
        vs = self.val_size
        n_val = round(vs * rest) if 0 < vs < 1 else int(vs)
        if vs > 0 and n_val == 0:
            raise ValueError(
                f"{self.origin}: {_plural(n, 'sample')} leave 0 for validation "
                f"(data.val_size={vs} of the {rest} left{after}); add samples, or set "
                "data.val_size to a count >= 1, or to 0 for no validation"
            )
        if n_val >= rest:
            raise ConfigError(
                f"{self.origin}: data.val_size={vs} leaves no training images "
                f"({rest} available{after})"
            )
        return n_test, n_val

    def _normalisation(self, x_train: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, std)``: the given ones (one entry per channel, or one for all) or computed
        per channel on (up to) 20k training images."""
        channels = x_train.shape[1]
        given = {}
        for key, value in (("mean", self._mean), ("std", self._std)):
            if value is None:
                continue
            given[key] = torch.tensor([float(v) for v in value])
            if len(given[key]) not in (1, channels):
                raise ConfigError(
                    f"{self.origin}: data.{key} has {len(given[key])} entries but the images "
                    f"have {_plural(channels, 'channel')}; give one per channel or one for all"
                )
        if len(given) < 2:
            scaled = to_unit_range(x_train[:20000])
        mean = given["mean"] if "mean" in given else scaled.mean((0, 2, 3))
        std = given["std"] if "std" in given else scaled.std((0, 2, 3))
        bad = ~torch.isfinite(std) | (std <= 0)
        if bad.any() and "std" not in given:
            raise ValueError(
                f"{self.origin}: x channels {bad.nonzero().flatten().tolist()} are constant on "
                "the train split (std 0); set data.std (and data.mean) explicitly"
            )
        if bad.any():
            raise ConfigError(f"data.std must be > 0 per channel, got {std.tolist()}")
        return mean, std

    def _loader(self, dataset: TensorBatchDataset, shuffle: bool, batch_size: int) -> DataLoader:
        """A loader of whole batches: shuffled for training, else one for evaluation.

        Evaluation loaders (val, test, relevance) get an ``EvalBatchSampler``: under DDP it turns
        the padding ``DistributedSampler`` that Lightning injects into an unrepeated one, so
        every sample counts exactly once over the ranks. Training keeps the padded sampler (DDP
        needs the same number of steps on every rank).
        """

        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        batches = IndexBatchSampler if shuffle else EvalBatchSampler
        return DataLoader(
            dataset,
            batch_sampler=batches(sampler, batch_size),
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, self.eval_batch_size)

    def relevance_indices(self) -> Tensor:
        """Indices into the relevance set (seeded; per class or a fraction)."""
        ds = self.train_set if self.relevance_set == "train" else self.val_set
        gen = torch.Generator().manual_seed(self.seed + 1)
        if self.relevance_per_class is not None:
            chosen = []
            for k in range(self.num_classes):
                idx = (ds.y == k).nonzero().flatten()
                if len(idx) < self.relevance_per_class:
                    raise ValueError(
                        f"data.relevance_per_class={self.relevance_per_class} but class {k} has "
                        f"only {len(idx)} images in the {self.relevance_set} split"
                    )
                chosen.append(
                    idx[torch.randperm(len(idx), generator=gen)[: self.relevance_per_class]]
                )
            return torch.cat(chosen).sort().values
        n = max(1, round(self.relevance_fraction * len(ds)))
        return torch.randperm(len(ds), generator=gen)[:n].sort().values

    def relevance_dataloader(self) -> DataLoader:
        """Loader over the relevance set, unshuffled."""
        ds = self.train_set if self.relevance_set == "train" else self.val_set
        idx = self.relevance_indices()
        return self._loader(TensorBatchDataset(ds.x[idx], ds.y[idx]), False, self.eval_batch_size)

    def describe(self) -> dict[str, Any]:
        """Facts for results.json."""
        facts = {
            "source": self.source,
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            "train": len(self.train_set),
            "val": len(self.val_set),
            "test": len(self.test_set),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "augment": list(self.augmentation.names),  # of training batches
        }
        if "crop" in self.augmentation.names:
            facts["crop_padding"] = self.augmentation.crop_padding
        return facts
