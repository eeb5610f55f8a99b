from __future__ import annotations

import pytest
import torch

from prune.models import MLP, LeNet5, ResNetSmall, VGGSmall


@pytest.mark.parametrize("cls", [MLP, LeNet5, VGGSmall, ResNetSmall])
@pytest.mark.parametrize("in_shape", [(1, 28, 28), (3, 32, 32)])
def test_model_output_shape(cls, in_shape):
    net = cls(in_shape=in_shape, num_classes=7).eval()
    assert net(torch.randn(2, *in_shape)).shape == (2, 7)


def test_mlp_is_lenet_300_100_by_default():
    net = MLP(in_shape=(1, 28, 28), num_classes=10)
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [300, 100, 10]


def test_lenet5_is_caffe_variant():
    net = LeNet5(in_shape=(1, 28, 28), num_classes=10)
    convs = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert convs == [20, 50] and fcs == [500, 10] and net.classifier[0].in_features == 800


def test_bad_widths_raise():
    with pytest.raises(ValueError, match="hidden"):
        MLP(in_shape=(1, 4, 4), num_classes=2, hidden=[])
    with pytest.raises(ValueError, match="cfg"):
        VGGSmall(in_shape=(1, 8, 8), num_classes=2, cfg=[8, "X"])
