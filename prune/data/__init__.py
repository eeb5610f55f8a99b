"""Tensor-backed data sources, one LightningDataModule per file."""

from prune.data.base import TensorDataModule
from prune.data.fashion_mnist import FashionMNISTDataModule
from prune.data.mnist import MNISTDataModule
from prune.data.mnist_sample import MNISTSampleDataModule
from prune.data.npz import NpzDataModule
from prune.data.synthetic import SyntheticDataModule

__all__ = [
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "MNISTSampleDataModule",
    "NpzDataModule",
    "SyntheticDataModule",
    "TensorDataModule",
]
