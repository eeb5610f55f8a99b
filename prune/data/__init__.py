"""Tensor-backed data sources, one LightningDataModule per file."""

from prune.data.base import TensorDataModule
from prune.data.cifar10 import CIFAR10DataModule
from prune.data.cifar100 import CIFAR100DataModule
from prune.data.fashion_mnist import FashionMNISTDataModule
from prune.data.image_folder import ImageFolderDataModule
from prune.data.mnist import MNISTDataModule
from prune.data.mnist_sample import MNISTSampleDataModule
from prune.data.npz import NpzDataModule
from prune.data.synthetic import SyntheticDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "MNISTSampleDataModule",
    "NpzDataModule",
    "SyntheticDataModule",
    "TensorDataModule",
]
