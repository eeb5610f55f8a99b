"""A generated battery of malformed .npz files: each fails early with one line, or is read right.

Hypothesis writes files of every kind of bad input a user can bring (NaN/Inf pixels, labels of
the wrong dtype, range, shape or length, gaps in the classes, one class, too few samples, a
test set of another image size or without labels, ``data.mean`` of the wrong length, ...). The
pipeline must refuse each one in ``build_datamodule``, before any training: exit status 2, one
``error: `` line on stderr that names the file, the array and the count, no traceback, and the
output folder as it was. Inputs that are valid (channels-last images, gaps with an explicit
``data.num_classes``) must build a datamodule of the right shape instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, open_dict

from prune.run.build import build_datamodule
from prune.run.entry import run
from prune.run.rounds import train
from prune.run.validation import validate_config
from tests.conftest import compose_cfg, with_output
from tests.reliability.helpers import TINY_BASE

SENTINEL = "notes of an earlier run\n"
#: examples per kind: every kind runs every time; about 60 examples in all, a few seconds
EXAMPLES = 3
BATTERY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Case:
    """One generated input: the arrays of the file, data.* values, and what must happen."""

    arrays: dict[str, np.ndarray]
    expected: list[str] = field(default_factory=list)  # substrings of the error line
    data: dict[str, Any] = field(default_factory=dict)  # data.<key> values
    in_shape: tuple[int, ...] | None = None  # valid input: the shape read


@pytest.fixture(scope="module")
def npz_cfg() -> DictConfig:
    """TINY_BASE with data=npz, composed once (TINY_BASE's data=synthetic is overridden)."""
    cfg = compose_cfg("train", [*TINY_BASE, "data=npz", "data.path=/placeholder.npz"])
    assert cfg.data._target_ == "prune.data.NpzDataModule"
    assert "num_train" not in cfg.data and cfg.data.num_classes is None
    return cfg


def _config(base: DictConfig, out: Path, path: Path, data: dict[str, Any]) -> DictConfig:
    cfg = with_output(base, out)
    with open_dict(cfg):
        cfg.data.path = str(path)
        for key, value in data.items():
            cfg.data[key] = value
    return cfg


# -- valid data, then one thing wrong ------------------------------------------------------------
@st.composite
def valid(draw, floats: bool | None = None, test: bool | None = None) -> Case:
    """Valid arrays: N in [24, 64], K in [2, 5], C in (1, 3) (never channels-last by the rule)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, k = draw(st.integers(24, 64)), draw(st.integers(2, 5))
    c, h, w = draw(st.sampled_from((1, 3))), draw(st.integers(2, 9)), draw(st.integers(2, 9))
    floats = draw(st.booleans()) if floats is None else floats
    squeeze = c == 1 and draw(st.booleans())  # (N, H, W)

    def images(m: int) -> np.ndarray:
        shape = (m, h, w) if squeeze else (m, c, h, w)
        if floats:
            return rng.random(shape, dtype=np.float32)
        return rng.integers(0, 256, shape, dtype=np.uint8)

    arrays = {"x": images(n), "y": rng.permutation(np.arange(n) % k)}
    if draw(st.booleans()) if test is None else test:
        m = draw(st.integers(3, 20))
        arrays.update(x_test=images(m), y_test=rng.permutation(np.arange(m) % k))
    return Case(arrays, in_shape=(c, h, w))


@st.composite
def nan_pixels(draw) -> Case:
    case = draw(valid(floats=True))
    name = draw(st.sampled_from(["x", "x_test"] if "x_test" in case.arrays else ["x"]))
    images = case.arrays[name]
    spots = draw(st.lists(st.integers(0, images.size - 1), min_size=1, max_size=6, unique=True))
    images.flat[spots] = draw(
        st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=len(spots), max_size=6)
    )[: len(spots)]
    per_image = images.size // len(images)
    hit = len({s // per_image for s in spots})
    values = "value" if len(spots) == 1 else "values"
    return Case(case.arrays, [f"{name} holds {len(spots)} NaN/Inf {values} in {hit} image"])


@st.composite
def label_dtype(draw) -> Case:
    case = draw(valid())
    dtype = draw(st.sampled_from([np.float32, np.float64, np.bool_]))
    case.arrays["y"] = case.arrays["y"].astype(dtype)
    return Case(case.arrays, ["y must hold integer labels 0..K-1", "got dtype"])


@st.composite
def negative_labels(draw) -> Case:
    case = draw(valid())
    y = case.arrays["y"]
    spots = draw(st.lists(st.integers(0, len(y) - 1), min_size=1, max_size=5, unique=True))
    y[spots] = -draw(st.integers(1, 10**6))
    label = "label" if len(spots) == 1 else "labels"
    return Case(case.arrays, [f"y holds {len(spots)} negative {label}", "labels must be 0..K-1"])


@st.composite
def stray_label(draw) -> Case:
    """One label far above the others: a gap of classes without a sample."""
    case = draw(valid())
    top = draw(st.integers(int(case.arrays["y"].max()) + 2, 2**62))
    case.arrays["y"][draw(st.integers(0, len(case.arrays["y"]) - 1))] = top
    return Case(case.arrays, ["no sample", f"data.num_classes={top + 1} if the gaps are meant"])


def _gapped(draw) -> tuple[Case, list[int]]:
    case = draw(valid())
    labels = sorted(
        draw(st.sets(st.integers(0, 12), min_size=2, max_size=5).filter(lambda s: max(s) >= len(s)))
    )
    y = np.array(labels)[np.arange(len(case.arrays["y"])) % len(labels)]
    case.arrays["y"] = y
    case.arrays.pop("x_test", None), case.arrays.pop("y_test", None)
    return case, labels


@st.composite
def label_gaps(draw) -> Case:
    case, labels = _gapped(draw)
    return Case(case.arrays, ["y has labels {", f"set data.num_classes={labels[-1] + 1}"])


@st.composite
def gaps_with_num_classes(draw) -> Case:
    """Valid: the explicit class count allows classes without a sample."""
    case, labels = _gapped(draw)
    k = labels[-1] + 1 + draw(st.integers(0, 3))
    return Case(case.arrays, data={"num_classes": k}, in_shape=case.in_shape)


@st.composite
def labels_above_num_classes(draw) -> Case:
    case = draw(valid(test=False))
    y = case.arrays["y"]
    k = draw(st.integers(2, max(2, int(y.max()))))
    if y.max() < k:  # two classes: make one label too large
        y[0] = k + draw(st.integers(0, 5))
    expected = [f">= data.num_classes={k} (max {int(y.max())})", f"labels must be 0..{k - 1}"]
    return Case(case.arrays, expected, {"num_classes": k})


@st.composite
def one_class(draw) -> Case:
    case = draw(valid(test=False))
    label = draw(st.integers(0, 9))
    case.arrays["y"] = np.full(len(case.arrays["y"]), label)
    return Case(case.arrays, [f"y has one class only ({label}); a classifier needs at least 2"])


@st.composite
def label_length(draw) -> Case:
    case = draw(valid())
    name = draw(st.sampled_from(["y", "y_test"] if "y_test" in case.arrays else ["y"]))
    labels = case.arrays[name]
    n = len(labels)
    new = draw(st.integers(0, n + 10).filter(lambda m: m != n))
    case.arrays[name] = np.resize(labels, new)
    images = "x" if name == "y" else "x_test"
    return Case(case.arrays, [f"{name} holds {new} labels but {images} holds {n} images"])


@st.composite
def label_ndim(draw) -> Case:
    case = draw(valid())
    y = case.arrays["y"]
    case.arrays["y"] = draw(st.sampled_from([y[:, None], np.eye(int(y.max()) + 1)[y].astype(int)]))
    return Case(case.arrays, ["y must be 1-d labels of shape", "got shape"])


@st.composite
def image_ndim(draw) -> Case:
    case = draw(valid())
    x = case.arrays["x"]
    case.arrays["x"] = draw(st.sampled_from([x.reshape(len(x), -1), x[:, None, None]]))
    return Case(case.arrays, ["x must be images (N, H, W), (N, C, H, W)", "got shape"])


@st.composite
def image_dtype(draw) -> Case:
    case = draw(valid(floats=False))
    dtype = draw(st.sampled_from([np.int16, np.int64, np.uint16, np.bool_]))
    case.arrays["x"] = case.arrays["x"].astype(dtype)
    return Case(case.arrays, ["x must be uint8 (0..255) or float in [0, 1], got dtype"])


@st.composite
def float_range(draw) -> Case:
    case = draw(valid(floats=True))
    x = case.arrays["x"]
    x.flat[draw(st.integers(0, x.size - 1))] = draw(
        st.one_of(st.floats(1.001, 1e30), st.floats(-1e30, -0.001))
    )
    return Case(case.arrays, ["float x holds 1 value outside [0, 1]", "scale it to [0, 1]"])


@st.composite
def half_test_pair(draw) -> Case:
    case = draw(valid(test=True))
    dropped = draw(st.sampled_from(["x_test", "y_test"]))
    kept = "y_test" if dropped == "x_test" else "x_test"
    del case.arrays[dropped]
    return Case(case.arrays, [f"has '{kept}' but no '{dropped}'"])


@st.composite
def other_test_image_size(draw) -> Case:
    case = draw(valid(test=True))
    x_test = case.arrays["x_test"]
    axis = draw(st.integers(1, x_test.ndim - 1))
    pad = [(0, 0)] * x_test.ndim
    pad[axis] = (0, draw(st.integers(1, 3)))
    case.arrays["x_test"] = np.pad(x_test, pad)
    return Case(case.arrays, ["x_test images have shape", "but x images"])


@st.composite
def y_test_outside_classes(draw) -> Case:
    case = draw(valid(test=True))
    y_test, k = case.arrays["y_test"], int(case.arrays["y"].max()) + 1
    y_test[draw(st.integers(0, len(y_test) - 1))] = k + draw(st.integers(0, 100))
    return Case(case.arrays, ["y_test holds 1 label outside", f"0..{k - 1}, the classes of y"])


@st.composite
def too_few(draw) -> Case:
    n = draw(st.integers(0, 5))
    arrays = {"x": np.zeros((n, 6, 6), np.uint8), "y": np.arange(n) % 2}
    expected = {0: "x holds 0 samples", 1: "y has one class only (0)"}.get(
        n, f"{n} samples leave 0 for validation (data.val_size=0.1"
    )
    return Case(arrays, [expected])


@st.composite
def normalisation_length(draw) -> Case:
    case = draw(valid())
    c = case.in_shape[0]
    key = draw(st.sampled_from(["mean", "std"]))
    length = draw(st.integers(2, 6).filter(lambda v: v != c))
    values = [0.5] * length
    return Case(
        case.arrays,
        [f"data.{key} has {length} entries but the images have {c} channel"],
        {key: values},
    )


@st.composite
def channels_last(draw) -> Case:
    """Valid: (N, H, W, C) with C in (1, 3, 4) and H none of these and larger is transposed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, c = draw(st.integers(24, 64)), draw(st.sampled_from((1, 3, 4)))
    h, w = draw(st.integers(5, 12)), draw(st.integers(2, 12))
    arrays = {
        "x": rng.integers(0, 256, (n, h, w, c), dtype=np.uint8),
        "y": np.arange(n) % 3,
    }
    if draw(st.booleans()):
        arrays.update(x_test=rng.random((7, h, w, c)), y_test=np.arange(7) % 3)
    return Case(arrays, in_shape=(c, h, w))


REFUSED: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "nan_pixels": nan_pixels,
    "label_dtype": label_dtype,
    "negative_labels": negative_labels,
    "stray_label": stray_label,
    "label_gaps": label_gaps,
    "labels_above_num_classes": labels_above_num_classes,
    "one_class": one_class,
    "label_length": label_length,
    "label_ndim": label_ndim,
    "image_ndim": image_ndim,
    "image_dtype": image_dtype,
    "float_range": float_range,
    "half_test_pair": half_test_pair,
    "test_image_size": other_test_image_size,
    "test_labels_outside": y_test_outside_classes,
    "too_few": too_few,
    "normalisation_length": normalisation_length,
}
ACCEPTED: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "valid": valid,
    "channels_last": channels_last,
    "gaps_with_num_classes": gaps_with_num_classes,
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_malformed_npz_fails_early_with_one_line(capsys, npz_cfg, kind):
    @BATTERY
    @given(case=REFUSED[kind]())
    def check(case: Case) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path, out = Path(tmp) / "data.npz", Path(tmp) / "run"
            np.savez(path, **case.arrays)
            out.mkdir()
            (out / "notes.txt").write_text(SENTINEL)
            cfg = _config(npz_cfg, out, path, case.data)
            capsys.readouterr()
            with pytest.raises(SystemExit) as exc:
                run(train, cfg)
            err = capsys.readouterr().err
            assert exc.value.code == 2, err
            lines = [line for line in err.splitlines() if line.startswith("error: ")]
            assert len(lines) == 1, err
            assert "Traceback" not in err, err
            for text in [f"data.path={str(path)!r}", *case.expected]:
                assert text in lines[0], (text, lines[0])
            assert (out / "notes.txt").read_text() == SENTINEL  # earlier output untouched
            assert not (out / "checkpoints").exists() and not (out / "results.json").exists()

    check()


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_valid_npz_builds_the_datamodule(npz_cfg, kind):
    @BATTERY
    @given(case=ACCEPTED[kind]())
    def check(case: Case) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "data.npz"
            np.savez(path, **case.arrays)
            cfg = _config(npz_cfg, Path(tmp) / "run", path, case.data)
            validate_config(cfg)
            dm = build_datamodule(cfg)
            assert dm.in_shape == case.in_shape
            k = case.data.get("num_classes", int(case.arrays["y"].max()) + 1)
            assert dm.num_classes == k
            assert min(len(dm.train_set), len(dm.val_set), len(dm.test_set)) >= 1

    check()
