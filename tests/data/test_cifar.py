from __future__ import annotations

import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch
from torchvision import datasets

from prune.data import CIFAR10DataModule, CIFAR100DataModule


def _pickle(path, content) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f)


def _fake_cifar10(root, per_batch=12, n_test=20):
    """torchvision's CIFAR-10 layout: pickled dicts of a uint8 array (N, 3072) and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": per_batch for i in range(1, 6)} | {"test_batch": n_test}
    written = {}
    for name, n in batches.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(k) for k in rng.permutation(np.arange(n) % 10)]
        _pickle(folder / name, {"batch_label": name, "data": data, "labels": labels})
        written[name] = (data, labels)
    _pickle(folder / "batches.meta", {"label_names": [f"class{k}" for k in range(10)]})
    return written


def _fake_cifar100(root, n_train=60, n_test=20):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = [int(k) for k in np.arange(n) % 100]
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        _pickle(folder / name, {"data": data, "fine_labels": fine, "coarse_labels": fine})
    _pickle(folder / "meta", {"fine_label_names": [f"c{k}" for k in range(100)]})


@pytest.fixture
def no_md5(monkeypatch):
    """The fake files are not the official ones: skip torchvision's MD5 check of them."""
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)


def test_cifar10_reads_torchvision_files_as_nchw_uint8(tmp_path, no_md5):
    written = _fake_cifar10(tmp_path)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, val_size=6)
    dm.check()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (54, 6, 20)
    assert dm.in_shape == (3, 32, 32) and dm.num_classes == 10
    data, labels = written["test_batch"]
    expected = torch.from_numpy(data).view(-1, 3, 32, 32)  # rows are R(1024) G(1024) B(1024)
    assert torch.equal(dm.test_set.x, expected) and dm.test_set.y.tolist() == labels
    assert dm.test_set.x.dtype == torch.uint8 and dm.mean.shape == (3, 1, 1)
    assert "CIFAR-10" in dm.describe()["source"]


def test_cifar100_has_100_fine_classes(tmp_path, no_md5):
    _fake_cifar100(tmp_path)
    dm = CIFAR100DataModule(root=str(tmp_path), download=False, val_size=0)
    dm.setup()
    assert dm.num_classes == 100 and len(dm.test_set) == 20


def test_cifar10_without_files_and_download_off_says_where_to_put_them(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path / "empty"), download=False)
    with pytest.raises(FileNotFoundError) as err:
        dm.check()
    message = str(err.value)
    assert "\n" not in message and f"{tmp_path}/empty/cifar-10-batches-py/data_batch_1" in message
    assert "data.download=false" in message and "cifar-10-python.tar.gz" in message


def test_cifar_config_check_refuses_missing_files_with_download_off(tmp_path, no_md5):
    from prune.checks import check_arguments

    values = {"root": str(tmp_path), "download": False}
    with pytest.raises(FileNotFoundError, match="data.download=false; put the extracted"):
        check_arguments(CIFAR100DataModule, values, "data.")
    check_arguments(CIFAR100DataModule, {**values, "download": True}, "data.")
    _fake_cifar100(tmp_path)
    check_arguments(CIFAR100DataModule, values, "data.")


def test_cifar10_offline_download_stops_with_one_line(tmp_path, monkeypatch):
    def offline(self):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    dm = CIFAR10DataModule(root=str(tmp_path), download=True)
    dm.check()  # download on: the check leaves it to setup
    with pytest.raises(FileNotFoundError, match="the download failed .*name resolution") as err:
        dm.setup()
    assert "\n" not in str(err.value) and "cifar-10-batches-py" in str(err.value)


def test_cifar10_files_failing_md5_are_named(tmp_path):
    _fake_cifar10(tmp_path, per_batch=2, n_test=2)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="fail torchvision's MD5 check"):
        dm.setup()
