"""Plain ``nn.Module`` classifiers; each takes ``in_shape`` (C, H, W) and ``num_classes``."""

from prune.models.lenet5 import LeNet5
from prune.models.mlp import MLP
from prune.models.resnet_cifar import ResNetCIFAR
from prune.models.resnet_small import ResNetSmall
from prune.models.timm_net import TimmNet
from prune.models.torchvision_net import TorchvisionNet
from prune.models.vgg_small import VGGSmall
from prune.models.vit import ViT

__all__ = [
    "MLP",
    "LeNet5",
    "ResNetCIFAR",
    "ResNetSmall",
    "TimmNet",
    "TorchvisionNet",
    "VGGSmall",
    "ViT",
]
