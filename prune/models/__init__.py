"""Plain ``nn.Module`` classifiers; each takes ``in_shape`` (C, H, W) and ``num_classes``."""

from prune.models.lenet5 import LeNet5
from prune.models.mlp import MLP
from prune.models.resnet_small import ResNetSmall
from prune.models.vgg_small import VGGSmall

__all__ = ["MLP", "LeNet5", "ResNetSmall", "VGGSmall"]
