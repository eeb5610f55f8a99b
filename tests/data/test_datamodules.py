from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from prune.data import (
    FashionMNISTDataModule,
    MNISTDataModule,
    MNISTSampleDataModule,
    NpzDataModule,
    SyntheticDataModule,
)
from prune.data.idx import read_idx


def _write_idx(path, array: np.ndarray) -> None:
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist_root(root, folder="MNIST", n_train=120, n_test=30):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


def test_mnist_reads_raw_files_with_split_sizes(tmp_path):
    root = _fake_mnist_root(tmp_path)
    dm = MNISTDataModule(root=str(root), download=False, val_size=20)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (100, 20, 30)
    assert dm.in_shape == (1, 28, 28) and dm.num_classes == 10
    assert dm.train_set.x.dtype == torch.uint8 and dm.train_set.y.dtype == torch.int64
    assert "MNIST" in dm.describe()["source"]


def test_mnist_read_only_root_works(tmp_path):
    root = _fake_mnist_root(tmp_path)
    for p in sorted(root.rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        dm = MNISTDataModule(root=str(root), download=True, val_size=20)
        dm.setup()
        assert len(dm.test_set) == 30
        assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir())[0].startswith("t10k")
    finally:
        for p in root.rglob("*"):
            p.chmod(0o755)


def test_split_is_deterministic_under_seed(tmp_path):
    root = _fake_mnist_root(tmp_path)
    a, b = (MNISTDataModule(root=str(root), download=False, val_size=20, seed=3) for _ in range(2))
    a.setup(), b.setup()
    assert torch.equal(a.val_set.x, b.val_set.x)
    c = MNISTDataModule(root=str(root), download=False, val_size=20, seed=4)
    c.setup()
    assert not torch.equal(a.val_set.x, c.val_set.x)


def test_mnist_falls_back_to_sample_and_records_it(tmp_path, caplog):
    dm = MNISTDataModule(root=str(tmp_path / "missing"), download=False)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert "fallback" in dm.describe()["source"]
    assert "Falling back" in caplog.text and "LRP_PRUNE_DATA" in caplog.text
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 5000
    assert dm.num_classes == 10


def test_mnist_without_fallback_raises_naming_the_root(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "missing"), download=False, allow_fallback=False)
    with pytest.raises(FileNotFoundError, match="data.root"):
        dm.check()
    with pytest.raises(FileNotFoundError, match="data.root"):
        dm.setup()


def test_fashion_mnist_has_no_fallback(tmp_path):
    with pytest.raises(FileNotFoundError, match="FashionMNIST"):
        FashionMNISTDataModule(root=str(tmp_path), download=False).setup()
    dm = FashionMNISTDataModule(
        root=str(_fake_mnist_root(tmp_path, "FashionMNIST")), download=False, val_size=10
    )
    dm.setup()
    assert len(dm.train_set) == 110


def test_mnist_sample_shapes_and_classes():
    dm = MNISTSampleDataModule()
    dm.setup()
    assert dm.in_shape == (1, 28, 28) and dm.num_classes == 10
    assert len(dm.test_set) == 833 and len(dm.train_set) + len(dm.val_set) == 4167
    assert dm.train_set.x.max() > 200  # real digits, not noise in [0, 1]


def test_synthetic_label_is_decided_by_the_block():
    dm = SyntheticDataModule(num_train=400, num_test=100, num_classes=4, block=(2, 2, 4, 4))
    dm.setup()
    mask = dm.signal_mask()
    x, y = dm.train_set.x, dm.train_set.y
    blocks = x[:, mask].float()  # (N, 16)
    for k in range(4):
        same = blocks[y == k]
        assert torch.equal(same, same[:1].expand_as(same))  # one pattern per class
    assert dm.num_classes == 4 and dm.in_shape == (1, 16, 16)


def test_npz_any_shape_and_classes(tmp_path):
    path = tmp_path / "own.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((60, 3, 12, 10), dtype=np.float32), y=np.arange(60) % 3)
    dm = NpzDataModule(path=str(path), val_size=6)
    dm.setup()
    assert dm.in_shape == (3, 12, 10) and dm.num_classes == 3
    assert len(dm.test_set) == 10 and len(dm.val_set) == 6 and dm.train_set.x.dtype == torch.float32


def test_npz_without_x_y_names_the_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(KeyError, match="'x'"):
        NpzDataModule(path=str(path)).check()


def test_loader_batches_by_indexing_and_relevance_subset():
    dm = SyntheticDataModule(num_train=200, num_test=40, batch_size=32, relevance_per_class=5)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.uint8 and y.shape == (32,)
    rel_y = torch.cat([b[1] for b in dm.relevance_dataloader()])
    assert torch.bincount(rel_y).tolist() == [5, 5, 5, 5]


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match="data.batch_size"):
        SyntheticDataModule(batch_size=0)
    with pytest.raises(ValueError, match="data.relevance_fraction"):
        SyntheticDataModule(relevance_fraction=1.5)


def test_read_idx_rejects_truncated_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    _write_idx(path, np.zeros((3, 4, 4)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_index_batch_sampler_covers_every_index_once_per_epoch():
    """Tensor batches of indices: every index once per epoch, shuffled, and Lightning can rebuild
    the sampler around a DistributedSampler (BatchSampler's signature)."""
    from torch.utils.data import DistributedSampler, RandomSampler

    from prune.data.samplers import IndexBatchSampler

    data = list(range(103))
    sampler = IndexBatchSampler(RandomSampler(data), batch_size=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 11 and all(b.dtype == torch.long for b in batches)
    order = torch.cat(batches)
    assert sorted(order.tolist()) == data and order.tolist() != data
    assert len(list(IndexBatchSampler(RandomSampler(data), 10, drop_last=True))) == 10
    shards = [
        torch.cat(list(IndexBatchSampler(DistributedSampler(data, 2, r, shuffle=False), 10)))
        for r in range(2)
    ]
    assert set(torch.cat(shards).tolist()) == set(data) and len(shards[0]) == len(shards[1])
    with pytest.raises(ValueError, match="batch_size"):
        IndexBatchSampler(RandomSampler(data), 0)
