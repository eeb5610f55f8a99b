from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from prune.data import ImageFolderDataModule
from prune.data.image_folder import IMAGE_SUFFIXES
from prune.errors import ConfigError
from prune.run.validation import validate_config
from tests.conftest import compose_cfg

COLOURS = {"cat": (200, 30, 40), "dog": (20, 180, 60), "owl": (10, 40, 220)}


def _png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _folder(root, per_class=6, grey=False):
    """Per class: one exact 8x8 image of random pixels, then solid images of other sizes (RGB
    and grey mixed unless ``grey``); returns the exact images by class."""
    rng = np.random.default_rng(0)
    exact = {}
    for name, colour in COLOURS.items():
        exact[name] = rng.integers(0, 256, (8, 8) if grey else (8, 8, 3), dtype=np.uint8)
        _png(root / name / "0_exact.png", exact[name])
        for i in range(1, per_class):
            h, w = 8 + 3 * i, 8 + 5 * (i % 3)  # other sizes and aspect ratios
            level = int(np.mean(colour))
            solid = np.full((h, w), level) if grey or i % 2 else np.full((h, w, 3), colour)
            _png(root / name / f"{i}.png", solid)
    return exact


def _dm(path, **kwargs) -> ImageFolderDataModule:
    kwargs.setdefault("image_size", 8)
    kwargs.setdefault("cache_dir", str(path.parent / "cache"))
    return ImageFolderDataModule(path=str(path), **kwargs)


def test_image_folder_round_trips_png_images_of_any_size(tmp_path):
    root = tmp_path / "images"
    exact = _folder(root)
    dm = _dm(root, val_size=2, seed=1)
    splits = dm._load_splits()
    x, y = splits["train"]
    assert x.dtype == torch.uint8 and x.shape == (18, 3, 8, 8) and dm.classes == sorted(COLOURS)
    files = [f for f, _ in dm._list()["train"]]
    for k, name in enumerate(dm.classes):
        i = files.index(root / name / "0_exact.png")
        assert int(y[i]) == k
        torch.testing.assert_close(x[i], torch.from_numpy(exact[name]).permute(2, 0, 1))
        # a solid image of another size stays that colour; a grey one becomes (g, g, g)
        rgb, grey = files.index(root / name / "2.png"), files.index(root / name / "1.png")
        assert x[rgb].flatten(1).unique(dim=1).T.tolist() == [list(COLOURS[name])]
        assert (x[grey] == int(np.mean(COLOURS[name]))).all()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (13, 2, 3)  # 18 // 6 = 3
    assert dm.in_shape == (3, 8, 8) and dm.num_classes == 3
    facts = dm.describe()
    assert facts["classes"] == sorted(COLOURS) and facts["image_size"] == [8, 8]


def test_grey_folder_gives_one_channel_unless_asked(tmp_path):
    root = tmp_path / "grey"
    exact = _folder(root, per_class=3, grey=True)
    dm = _dm(root)
    x, _ = dm._load_splits()["train"]
    assert x.shape[1] == 1
    i = [f for f, _ in dm._list()["train"]].index(root / "cat" / "0_exact.png")
    torch.testing.assert_close(x[i, 0], torch.from_numpy(exact["cat"]))
    x3, _ = _dm(root, channels=3)._load_splits()["train"]
    assert x3.shape[1] == 3 and torch.equal(x3[i], x[i].expand(3, 8, 8))


def test_non_square_size_crops_the_centre(tmp_path):
    root = tmp_path / "images"
    for name in ("a", "b"):
        stripes = np.repeat(np.array([0, 80, 160, 240], dtype=np.uint8), 4)[None].repeat(16, 0)
        _png(root / name / "s.png", stripes)  # 16x16 grey, columns 0..3 black, 12..15 white
    dm = _dm(root, image_size=[16, 8], channels=1)  # cover 16x8: no scaling, crop columns 4..11
    x, _ = dm._load_splits()["train"]
    assert x.shape == (2, 1, 16, 8)
    assert x[0, 0, 0].tolist() == [80] * 4 + [160] * 4


def test_cache_is_reused_and_invalidated_when_a_file_is_added(tmp_path, monkeypatch):
    root = tmp_path / "images"
    _folder(root, per_class=3)
    decoded = []
    original = ImageFolderDataModule._decode

    def counting(self, file):
        decoded.append(file)
        return original(self, file)

    monkeypatch.setattr(ImageFolderDataModule, "_decode", counting)
    first = _dm(root)
    x1, _ = first._load_splits()["train"]
    assert len(decoded) == 9 and first.cache_file().is_file()
    stored = torch.load(first.cache_file(), weights_only=True)  # data only: tensors and strings
    assert stored["splits"]["train"]["files"][0] == os.path.join("cat", "0_exact.png")

    decoded.clear()
    x2, _ = _dm(root)._load_splits()["train"]  # same folder: read from the cache
    assert decoded == [] and torch.equal(x1, x2)

    _png(root / "dog" / "new.png", np.zeros((5, 9, 3)))
    again = _dm(root)
    x3, y3 = again._load_splits()["train"]
    assert len(decoded) == 10 and len(x3) == 10 and int((y3 == 1).sum()) == 4

    decoded.clear()
    os.utime(root / "cat" / "1.png", ns=(1, 1))  # changed time, same name and size
    _dm(root)._load_splits()
    assert len(decoded) == 10


def test_cache_stays_out_of_the_image_folder_by_default(tmp_path, monkeypatch):
    root = tmp_path / "images"
    _folder(root, per_class=2)
    monkeypatch.setenv("LRP_PRUNE_DATA", str(tmp_path / "data_root"))
    before = sorted(p for p in root.rglob("*"))
    dm = ImageFolderDataModule(path=str(root), image_size=8, val_size=1)
    dm.setup()
    assert sorted(p for p in root.rglob("*")) == before
    assert dm.cache_file().parent == tmp_path / "data_root" / "image_cache"
    assert dm.cache_file().is_file()


def test_cache_folder_inside_the_images_is_not_a_class(tmp_path):
    root = tmp_path / "images"
    _folder(root, per_class=2)
    dm = _dm(root, cache_dir=str(root / "cache"), val_size=1)
    dm.setup()
    again = _dm(root, cache_dir=str(root / "cache"), val_size=1)
    again.setup()
    assert again.classes == sorted(COLOURS)


def test_split_folders_give_train_val_test(tmp_path):
    root = tmp_path / "images"
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for name in ("a", "b"):
            for i in range(n):
                _png(root / split / name / f"{i}.jpg", np.full((9, 7, 3), 10 * i))
    dm = _dm(root, val_size=0.5)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 4, 6)
    assert dm.val_set.y.tolist() == [0, 0, 1, 1] and dm.val_size == 0.5


def test_missing_test_folder_is_held_out_seeded(tmp_path):
    root = tmp_path / "images"
    for name in ("a", "b"):
        for i in range(6):
            _png(root / "train" / name / f"{i}.png", np.full((8, 8), 20 * i))
    a, b = _dm(root, val_size=2, seed=3), _dm(root, val_size=2, seed=3)
    a.setup(), b.setup()
    assert (len(a.train_set), len(a.val_set), len(a.test_set)) == (8, 2, 2)
    assert torch.equal(a.test_set.x, b.test_set.x)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda root: root.mkdir(), "holds no class folders"),
        (
            lambda root: _png(root / "a" / "x.png", np.zeros((4, 4))),
            "a classifier needs at least 2",
        ),
        (
            lambda root: (_png(root / "a" / "x.png", np.zeros((4, 4))), (root / "b").mkdir()),
            "class folder b holds no images",
        ),
        (
            lambda root: (
                _png(root / "a" / "x.png", np.zeros((4, 4))),
                (root / "b").mkdir(),
                (root / "b" / "notes.txt").write_text("not an image"),
            ),
            "class folder b holds no images",
        ),
        (
            lambda root: (
                _png(root / "train" / "a" / "x.png", np.zeros((4, 4))),
                _png(root / "train" / "b" / "x.png", np.zeros((4, 4))),
                _png(root / "val" / "c" / "x.png", np.zeros((4, 4))),
            ),
            "val/c is not a class of train/",
        ),
        (
            lambda root: (
                _png(root / "train" / "a" / "x.png", np.zeros((4, 4))),
                _png(root / "extra" / "x.png", np.zeros((4, 4))),
            ),
            r"train/ and other folders \['extra'\]",
        ),
    ],
)
def test_bad_folders_fail_with_one_line(tmp_path, make, match):
    root = tmp_path / "images"
    make(root)
    with pytest.raises(ValueError, match=match) as err:
        _dm(root).check()
    assert "\n" not in str(err.value) and f"data.path='{root}'" in str(err.value)


def test_unreadable_image_is_named(tmp_path):
    root = tmp_path / "images"
    _folder(root, per_class=2)
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    dm = _dm(root)
    dm.check()  # listing is fine: the file is only read when decoding
    with pytest.raises(ValueError, match="cannot read image .*dog/broken.png") as err:
        dm.setup()
    assert "\n" not in str(err.value)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="data.path must name a folder"):
        ImageFolderDataModule(path=None)
    with pytest.raises(ConfigError, match="data.image_size"):
        ImageFolderDataModule(path="x", image_size=[0, 4])
    with pytest.raises(ConfigError, match="data.channels must be 1, 3 or null"):
        ImageFolderDataModule(path="x", channels=2)
    assert ".png" in IMAGE_SUFFIXES and ".jpg" in IMAGE_SUFFIXES


def test_config_check_asks_the_data_class_for_a_folder(tmp_path):
    root = tmp_path / "images"
    _folder(root, per_class=2)
    validate_config(compose_cfg("train", ["data=image_folder", f"data.path={root}"]))
    file = root / "cat" / "1.png"
    with pytest.raises(ConfigError, match="is a file; need a folder of images"):
        validate_config(compose_cfg("train", ["data=image_folder", f"data.path={file}"]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        validate_config(compose_cfg("train", ["data=image_folder", f"data.path={tmp_path}/no"]))
    with pytest.raises(ConfigError, match="is a directory; need an .npz file"):
        validate_config(compose_cfg("train", ["data=npz", f"data.path={root}"]))


def test_declared_checks_refuse_bad_values_before_anything_is_built(tmp_path):
    from prune.checks import check_arguments

    check_arguments(ImageFolderDataModule, {"path": str(tmp_path), "augment": ["flip"]}, "data.")
    bad = [
        ({"path": str(tmp_path / "f.npz")}, FileNotFoundError, "data.path=.* does not exist"),
        ({"image_size": [8, 8, 8]}, ConfigError, "data.image_size must be an integer >= 1"),
        ({"channels": 4}, ConfigError, "data.channels must be 1, 3 or null"),
        ({"augment": ["blur"]}, ConfigError, "data.augment must be a list of"),
        ({"augment": ["crop"], "crop_padding": 0}, ConfigError, "data.crop_padding must be >= 1"),
    ]
    for values, error, match in bad:
        with pytest.raises(error, match=match):
            check_arguments(ImageFolderDataModule, values, "data.")
