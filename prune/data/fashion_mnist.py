"""Fashion-MNIST (Xiao et al. 2017) from torchvision's raw files."""

from __future__ import annotations

from torchvision import datasets

from prune.data.mnist import TorchvisionIDXDataModule


class FashionMNISTDataModule(TorchvisionIDXDataModule):
    """Fashion-MNIST: 60k training and 10k test images of clothing, 1x28x28, 10 classes.

    There is no offline fallback: missing files that cannot be downloaded are an error.
    """

    folder = "FashionMNIST"
    dataset_cls = datasets.FashionMNIST
    fallback = False
