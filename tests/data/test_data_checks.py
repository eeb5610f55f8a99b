"""Data is checked before training: one-line errors naming the file, the array and the fix."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from prune.data import NpzDataModule, SyntheticDataModule, TensorDataModule
from prune.errors import ConfigError
from prune.run.validation import validate_config
from tests.conftest import compose_cfg


def _npz(tmp_path, name="data.npz", n=60, classes=3, **arrays) -> str:
    """An .npz file of ``n`` uint8 8x8 images with labels ``0..classes-1``, ``arrays`` replaced."""
    rng = np.random.default_rng(0)
    base = {"x": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), "y": np.arange(n) % classes}
    base.update(arrays)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return str(path)


def _refused(path: str, **kwargs) -> str:
    """The message ``NpzDataModule(path).setup()`` raises: one line that names the file."""
    with pytest.raises(ValueError) as err:  # each test matches the message itself
        NpzDataModule(path=path, **kwargs).setup()
    message = str(err.value)
    assert "\n" not in message
    assert f"data.path={path!r}" in message, message
    return message


class Tensors(TensorDataModule):
    """A source handing over tensors as they are: the generic checks apply to every source."""

    source = "tensors"

    def __init__(self, x, y, x_test=None, y_test=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arrays = (x, y, x_test, y_test)

    def load(self):
        return self.arrays


# -- finding 3: NaN / Inf pixels ------------------------------------------------------------------
def test_npz_refuses_nan_pixels_counting_values_and_images(tmp_path):
    x = np.random.default_rng(0).random((60, 8, 8), dtype=np.float32)
    x[4, 0, 0] = x[4, 1, 1] = np.nan
    x[9, 2, 2] = np.inf
    message = _refused(_npz(tmp_path, x=x))
    assert "x holds 3 NaN/Inf values in 2 images; replace or drop them" in message


def test_npz_refuses_inf_in_x_test(tmp_path):
    x_test = np.random.default_rng(1).random((12, 8, 8))  # float64
    x_test[3, 5, 5] = -np.inf
    message = _refused(_npz(tmp_path, x_test=x_test, y_test=np.arange(12) % 3))
    assert "x_test holds 1 NaN/Inf value in 1 image" in message


def test_any_source_with_nan_float_images_is_refused():
    x = torch.rand(40, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"data source 'tensors': x holds 1 NaN/Inf value in 1"):
        Tensors(x, torch.arange(40) % 2).setup()


# -- finding 4: labels ----------------------------------------------------------------------------
def test_npz_label_gaps_name_the_missing_classes(tmp_path):
    message = _refused(_npz(tmp_path, y=np.arange(60) % 2 * 7))
    assert (
        "y has labels {0, 7}: classes 1..6 have no sample; labels must be 0..K-1, or set "
        "data.num_classes=8 if the gaps are meant"
    ) in message


def test_npz_one_huge_or_stray_label_is_refused(tmp_path):
    y = np.arange(60) % 10
    y[5] = 1_000_000
    message = _refused(_npz(tmp_path, y=y))
    assert "{0..9, 1000000}: classes 10..999999 have no sample" in message
    y[5] = 12
    assert "classes 10, 11 have no sample" in _refused(_npz(tmp_path, y=y))


def test_num_classes_allows_gaps_and_bounds_the_labels(tmp_path):
    path = _npz(tmp_path, y=np.arange(60) % 2 * 7)
    dm = NpzDataModule(path=path, num_classes=8)
    dm.setup()
    assert dm.num_classes == 8 and dm.describe()["num_classes"] == 8
    message = _refused(path, num_classes=5)
    assert "y holds 30 labels >= data.num_classes=5 (max 7); labels must be 0..4" in message
    with pytest.raises(ConfigError, match="data.num_classes must be an integer >= 2 or null"):
        NpzDataModule(path=path, num_classes=1)


def test_test_labels_must_be_classes_of_the_training_labels(tmp_path):
    y_test = np.arange(12) % 3
    y_test[[2, 7]] = [5, 9]
    message = _refused(_npz(tmp_path, x_test=np.zeros((12, 8, 8), np.uint8), y_test=y_test))
    assert "y_test holds 2 labels outside 0..2, the classes of y ({5, 9})" in message


def test_one_class_and_zero_samples_are_refused(tmp_path):
    message = _refused(_npz(tmp_path, y=np.zeros(60, np.int64)))
    assert "y has one class only (0); a classifier needs at least 2" in message
    empty = _npz(tmp_path, x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0, np.int64))
    assert "x holds 0 samples" in _refused(empty)


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        (
            np.arange(60, dtype=np.float32) % 3,
            "y must hold integer labels 0..K-1, got dtype float32",
        ),
        ((np.arange(60) % 3)[:, None], "y must be 1-d labels of shape (60,), got shape (60, 1)"),
        (np.arange(60) % 3 - 1, "y holds 20 negative labels (min -1); labels must be 0..K-1"),
        (np.arange(59) % 3, "y holds 59 labels but x holds 60 images; need one label per image"),
    ],
    ids=["float", "2-d", "negative", "length"],
)
def test_bad_labels_name_file_and_array(tmp_path, y, expected):
    assert expected in _refused(_npz(tmp_path, y=y))


# -- finding 4: shapes, pairs, normalisation, splits, paths ---------------------------------------
def test_x_test_of_another_image_size_is_refused(tmp_path):
    path = _npz(tmp_path, x_test=np.zeros((12, 10, 10), np.uint8), y_test=np.arange(12) % 3)
    message = _refused(path)
    assert "x_test images have shape (1, 10, 10) but x images (1, 8, 8)" in message


def test_mean_and_std_need_one_entry_per_channel_or_one(tmp_path):
    path = _npz(tmp_path)
    message = _refused(path, mean=[0.5, 0.5], std=[1.0])
    assert "data.mean has 2 entries but the images have 1 channel" in message
    rgb = _npz(tmp_path, "rgb.npz", x=np.zeros((60, 3, 8, 8), np.uint8) + 7)
    dm = NpzDataModule(path=rgb, mean=[0.5], std=[0.25, 0.5, 1.0])  # one entry: for all channels
    dm.setup()
    assert dm.mean.flatten().tolist() == [0.5] and dm.std.flatten().tolist() == [0.25, 0.5, 1.0]


@pytest.mark.parametrize(("have", "lack"), [("x_test", "y_test"), ("y_test", "x_test")])
def test_half_a_test_pair_is_refused(tmp_path, have, lack):
    arrays = {"x_test": np.zeros((12, 8, 8), np.uint8), "y_test": np.arange(12) % 3}
    arrays[lack] = None
    path = _npz(tmp_path, **arrays)
    with pytest.raises(ValueError, match=f"has '{have}' but no '{lack}'; add {lack}"):
        NpzDataModule(path=path).check()
    with pytest.raises(ValueError, match=f"{have} is given without {lack}"):  # any source
        Tensors(torch.zeros(30, 1, 4, 4), torch.arange(30) % 2, *arrays.values()).setup()


def test_channels_last_is_transposed_with_one_warning(tmp_path, caplog):
    x = np.random.default_rng(0).integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    dm = NpzDataModule(path=_npz(tmp_path, x=x), val_size=0)
    with caplog.at_level(logging.WARNING, logger="prune.data.npz"):
        dm.setup()
    assert dm.in_shape == (3, 8, 8)
    warnings = [r.getMessage() for r in caplog.records if "channels-last" in r.getMessage()]
    assert len(warnings) == 1 and "(60, 8, 8, 3)" in warnings[0], warnings
    images = torch.cat([dm.train_set.x, dm.test_set.x])
    originals = torch.from_numpy(x).permute(0, 3, 1, 2)
    assert {tuple(i.flatten().tolist()) for i in images} == {
        tuple(o.flatten().tolist()) for o in originals
    }


def test_too_few_samples_for_the_splits_is_refused(tmp_path):
    message = _refused(_npz(tmp_path, n=5, classes=2))
    assert (
        "5 samples leave 0 for validation (data.val_size=0.1 of the 4 left after 1 held out for "
        "test); add samples, or set data.val_size to a count >= 1, or to 0 for no validation"
    ) in message
    dm = NpzDataModule(path=_npz(tmp_path, n=5, classes=2), val_size=0)  # no validation: fine
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4, 0, 1)
    assert "leaves no training images (4 available" in _refused(
        _npz(tmp_path, n=5, classes=2), val_size=4
    )


def test_a_directory_as_data_path_is_named_a_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory; need an .npz file"):
        NpzDataModule(path=str(tmp_path)).check()
    cfg = compose_cfg("train", ["data=npz", f"data.path={tmp_path}"])
    with pytest.raises(ConfigError, match=f"data.path='{tmp_path}' is a directory; need an .npz"):
        validate_config(cfg)


def test_num_classes_null_is_valid_config_and_one_is_not(tmp_path):
    path = _npz(tmp_path)
    validate_config(compose_cfg("train", ["data=npz", f"data.path={path}"]))
    cfg = compose_cfg("train", ["data=npz", f"data.path={path}", "data.num_classes=1"])
    with pytest.raises(ConfigError, match="data.num_classes must be an integer >= 2 or null"):
        validate_config(cfg)


def test_synthetic_num_classes_is_the_datamodule_class_count():
    dm = SyntheticDataModule(num_train=3, num_test=8, num_classes=4, val_size=0)
    dm.setup()  # class 3 has no training image: allowed, the count is explicit
    assert dm.num_classes == 4
    with pytest.raises(ConfigError, match="data.num_classes must be an integer >= 2"):
        SyntheticDataModule(num_classes=None)


def test_valid_float_data_passes_unchanged(tmp_path):
    x = np.random.default_rng(0).random((60, 2, 8, 8))  # float64, finite, in [0, 1]
    dm = NpzDataModule(path=_npz(tmp_path, x=x), val_size=6)
    dm.setup()
    assert (
        dm.in_shape == (2, 8, 8) and dm.num_classes == 3 and dm.train_set.x.dtype == torch.float32
    )
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (44, 6, 10)
