from __future__ import annotations

import math
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from prune.errors import ConfigError
from prune.models import ResNetCIFAR, TimmNet, TorchvisionNet
from prune.models.adapt import adapt_input_channels, replace_head
from prune.run.checkpoint import load_checkpoint
from prune.run.rounds import train
from prune.run.stored_config import check_stored_config
from tests.conftest import FAST, compose_cfg, with_output
from tests.data.test_cifar import _fake_cifar10

GREY = (1, 28, 28)


def _x(shape=GREY, n=2):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))


# -- ResNet in the CIFAR layout ----------------------------------------------------------------
def test_resnet_cifar_depth_gives_6n_plus_2_layers():
    net = ResNetCIFAR((3, 32, 32), 10, depth=20)
    assert net(_x((3, 32, 32))).shape == (2, 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 3x3 convs plus the linear layer; 1x1 shortcuts not counted
    assert [len(stage) for stage in net.layers] == [3, 3, 3]
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.27e6, rel=0.02)
    shortcuts = [b.shortcut for stage in net.layers for b in stage]
    assert sum(isinstance(s, nn.Sequential) for s in shortcuts) == 2  # option B, where it widens
    assert [len(s) for s in ResNetCIFAR((3, 32, 32), 10, depth=56).layers] == [9, 9, 9]


@pytest.mark.parametrize("depth", [21, 2, 0, True, 20.0])
def test_resnet_cifar_refuses_other_depths(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNetCIFAR((3, 32, 32), 10, depth=depth)


def test_declared_checks_name_the_bad_model_values():
    from prune.checks import check_arguments

    check_arguments(ResNetCIFAR, {"depth": 56, "widths": [16, 32, 64]}, "model.net.")
    with pytest.raises(ConfigError, match="model.net.depth must be 6n \\+ 2"):
        check_arguments(ResNetCIFAR, {"depth": 51}, "model.net.")
    with pytest.raises(ConfigError, match="model.net.name must be a name of torchvision"):
        check_arguments(TorchvisionNet, {"name": "resnet7"}, "model.net.")
    with pytest.raises(ConfigError, match="model.net.pretrained must be true or false"):
        check_arguments(TimmNet, {"pretrained": "yes"}, "model.net.")


# -- torchvision -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "small_input"), [("resnet18", False), ("mobilenet_v2", False), ("vgg11_bn", True)]
)
def test_torchvision_models_fit_grey_28x28_and_10_classes(name, small_input):
    net = TorchvisionNet(GREY, 10, name=name, small_input=small_input)
    assert net(_x()).shape == (2, 10)
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == 10 and net.in_shape == GREY and net.num_classes == 10


def test_small_input_swaps_the_resnet_stem_and_keeps_resolution():
    net = TorchvisionNet(GREY, 10, name="resnet18", small_input=True)
    conv1 = net.model.conv1
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(net.model.maxpool, nn.Identity)
    seen = {}
    net.model.layer4.register_forward_hook(lambda m, i, o: seen.update(layer4=o.shape))
    net(_x())
    assert seen["layer4"][-2:] == (4, 4)  # the stock stem leaves 1x1 here


def test_too_small_images_fail_at_construction_with_the_fix():
    # as VGG's five pools on 28x28 (vgg11_bn is slower to build: a 25088x4096 layer)
    with pytest.raises(ValueError, match="squeezenet1_1 cannot take images of shape") as err:
        TorchvisionNet((1, 8, 8), 10, name="squeezenet1_1")
    assert "model.small_input=true" in str(err.value) and "\n" not in str(err.value)


def test_head_replacement_finds_a_1x1_conv_head():
    model = torchvision.models.squeezenet1_1()  # its classifier is a 1x1 conv of 1000 channels
    replace_head(model, 1000, 10, "squeezenet1_1")
    assert model.classifier[1].out_channels == 10
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(ValueError, match="no Linear \\(or 1x1 Conv2d\\) layer with 1000 outputs"):
        replace_head(nn.Sequential(nn.Linear(4, 3)), 1000, 10, "tiny")


def test_pretrained_grey_stem_sums_the_rgb_kernels_and_gets_a_new_head(monkeypatch):
    reference = torchvision.models.resnet18()  # stands in for the ImageNet weights, offline
    monkeypatch.setattr(
        torchvision.models.WeightsEnum, "get_state_dict", lambda self, **kw: reference.state_dict()
    )
    net = TorchvisionNet(GREY, 10, name="resnet18", weights="DEFAULT")
    assert net.weights == "ResNet18_Weights.IMAGENET1K_V1"
    torch.testing.assert_close(
        net.model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True), rtol=0, atol=0
    )
    torch.testing.assert_close(net.model.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert net.model.fc.out_features == 10 and net.model.fc.in_features == 512
    rgb = TorchvisionNet((3, 28, 28), 1000, name="resnet18", weights="IMAGENET1K_V1")
    assert torch.equal(rgb.model.fc.weight, reference.fc.weight)  # ImageNet's classes: kept


def test_grey_stem_gives_the_response_to_the_grey_image_in_rgb():
    weight = torch.randn(4, 3, 3, 3)
    grey = torch.rand(1, 1, 6, 6)
    conv = nn.functional.conv2d
    torch.testing.assert_close(
        conv(grey, adapt_input_channels(weight, 1)), conv(grey.expand(1, 3, 6, 6), weight)
    )
    five = adapt_input_channels(weight, 5)  # other counts: RGB repeated, scaled by 3 / 5
    torch.testing.assert_close(five, torch.cat([weight, weight[:, :2]], 1) * 0.6)


def test_pretrained_offline_stops_with_one_line(monkeypatch, tmp_path):
    def offline(self, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(FileNotFoundError) as err:
        TorchvisionNet(GREY, 10, name="resnet18", weights="DEFAULT")
    message = str(err.value)
    assert "\n" not in message and "resnet18 weights are not in" in message
    assert f"{tmp_path}/torch/hub/checkpoints" in message and "model.weights=null" in message


def test_config_check_refuses_pretrained_weights_that_cannot_come(monkeypatch, tmp_path):
    from prune.checks import check_arguments

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("prune.models.torchvision_net.reachable", lambda url: False)
    values = {"name": "resnet18", "weights": "DEFAULT"}
    with pytest.raises(FileNotFoundError, match="download.pytorch.org cannot be reached") as err:
        check_arguments(TorchvisionNet, values, "model.net.")
    assert "\n" not in str(err.value)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # cached: nothing to fetch
    check_arguments(TorchvisionNet, values, "model.net.")
    check_arguments(TorchvisionNet, {"name": "resnet18", "weights": None}, "model.net.")


def test_unknown_torchvision_names_are_refused():
    with pytest.raises(ConfigError, match="'resnet7' is not a torchvision classification model"):
        TorchvisionNet(GREY, 10, name="resnet7")
    with pytest.raises(ConfigError, match="not a weight of torchvision resnet18; choose null"):
        TorchvisionNet(GREY, 10, name="resnet18", weights="IMAGENET9K")


# -- timm --------------------------------------------------------------------------------------
def test_timm_model_fits_grey_28x28_and_10_classes():
    pytest.importorskip("timm")
    net = TimmNet(GREY, 10, name="resnet10t")
    assert net(_x()).shape == (2, 10)
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1


def test_timm_pretrained_offline_stops_with_one_line(monkeypatch):
    pytest.importorskip("timm")
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(builder, "load_pretrained", offline)
    monkeypatch.setattr("prune.models.timm_net.reachable", lambda url: False)  # no network
    with pytest.raises(FileNotFoundError, match="timm resnet10t weights are not cached") as err:
        TimmNet(GREY, 10, name="resnet10t", pretrained=True)
    assert "\n" not in str(err.value) and "model.pretrained=false" in str(err.value)


def test_timm_config_check_refuses_pretrained_weights_that_cannot_come(monkeypatch):
    pytest.importorskip("timm")
    from prune.checks import check_arguments

    monkeypatch.setattr("prune.models.timm_net.reachable", lambda url: False)
    monkeypatch.setattr("prune.models.timm_net.timm_cached", lambda name: False)
    with pytest.raises(FileNotFoundError, match="cannot be reached; run once with network"):
        check_arguments(TimmNet, {"name": "resnet10t", "pretrained": True}, "model.net.")
    check_arguments(TimmNet, {"name": "resnet10t", "pretrained": False}, "model.net.")


def test_timm_kwargs_build_a_vit_for_28x28_and_bad_ones_are_refused():
    pytest.importorskip("timm")
    sizes = {"img_size": 28, "patch_size": 7, "embed_dim": 16, "depth": 1, "num_heads": 2}
    net = TimmNet(GREY, 10, name="vit_tiny_patch16_224", kwargs=sizes)
    assert net(_x()).shape == (2, 10) and net.model.patch_embed.num_patches == 16
    with pytest.raises(ConfigError, match=r"does not take them .*'heads'") as err:
        TimmNet(GREY, 10, name="vit_tiny_patch16_224", kwargs={**sizes, "heads": 2})
    assert "\n" not in str(err.value) and "model.kwargs=" in str(err.value)
    with pytest.raises(ConfigError, match="model.kwargs.num_classes is set from the data"):
        TimmNet(GREY, 10, name="vit_tiny_patch16_224", kwargs={**sizes, "num_classes": 3})


def test_unknown_timm_name_is_refused():
    pytest.importorskip("timm")
    with pytest.raises(ConfigError, match="'resnet10tt' is not a timm model"):
        TimmNet(GREY, 10, name="resnet10tt")


# -- through the pipeline ----------------------------------------------------------------------
TINY = [
    *FAST,
    "~logger",
    "threads=1",
    "data.batch_size=16",
    "data.eval_batch_size=64",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "measure.latency_batches=[1]",
    "measure.latency_repeats=1",
]


def test_resnet_cifar_trains_on_cifar_files_with_augmentation(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    _fake_cifar10(tmp_path / "data", per_batch=16, n_test=32)
    overrides = [
        "data=cifar10",
        f"data.root={tmp_path / 'data'}",
        "data.download=false",
        "data.augment=[crop,flip]",
        "model=resnet_cifar",
        "model.net.depth=8",
    ]
    cfg = with_output(compose_cfg("train", [*TINY, *overrides]), tmp_path / "run")
    results = train(cfg)
    assert results["data"]["augment"] == ["crop", "flip"] and results["data"]["num_classes"] == 10
    assert 0.0 <= results["rounds"][0]["test/acc"] <= 1.0
    ckpt = load_checkpoint(results["rounds"][0]["checkpoint"])
    check_stored_config(ckpt["run_config"], "ckpt_path", "best.ckpt")  # a class of prune.models
    net = ResNetCIFAR((3, 32, 32), 10, depth=8)
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k[:4] == "net."}
    net.load_state_dict(state)


def test_torchvision_model_trains_on_an_image_folder(tmp_path):
    for k, name in enumerate(("a", "b", "c")):
        for i in range(8):
            image = np.full((12 + i, 10, 3), 40 * k + 3 * i, dtype=np.uint8)
            (tmp_path / "images" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "images" / name / f"{i}.png")
    overrides = [
        "data=image_folder",
        f"data.path={tmp_path / 'images'}",
        "data.image_size=16",
        "data.val_size=3",
        f"data.cache_dir={tmp_path / 'cache'}",
        "model=torchvision",
        "model.name=resnet18",
        "model.small_input=true",
    ]
    cfg = with_output(compose_cfg("train", [*TINY, *overrides]), tmp_path / "run")
    results = train(cfg)
    assert results["data"]["in_shape"] == [3, 16, 16] and results["data"]["classes"] == list("abc")
    assert results["config"]["model"]["net"]["name"] == "resnet18"
    assert math.isfinite(results["rounds"][0]["cost/flops"])
