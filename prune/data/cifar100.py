"""CIFAR-100 through torchvision: downloaded when the network allows, else read from the root."""

from __future__ import annotations

from torchvision import datasets

from prune.data.cifar10 import CIFAR10DataModule


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (Krizhevsky 2009): 50k training and 10k test images, 3x32x32, 100 classes.

    The 100 fine labels; files under ``<root>/cifar-100-python`` (``train``, ``test``,
    ``meta``), downloaded as ``cifar-100-python.tar.gz`` when missing. Everything else is as
    :class:`prune.data.cifar10.CIFAR10DataModule`.
    """

    dataset_cls = datasets.CIFAR100
    name = "CIFAR-100"
    classes = 100
