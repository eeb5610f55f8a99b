"""The zoo experiments end to end on synthetic data of their shapes, and their stated recipes."""

from __future__ import annotations

import json

import pytest
import torch

from prune.data import SyntheticDataModule
from prune.errors import ConfigError
from prune.pruning import PruningPlan, find_groups
from prune.run.build import build_datamodule, build_module
from prune.run.rounds import train
from tests.conftest import FAST, compose_cfg, with_output

TINY = [
    *FAST,
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "retrain.max_epochs=1",
    "data.num_train=120",
    "data.num_test=40",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.relevance_per_class=2",
    "measure.latency_batches=[1]",
    "threads=1",
]


def test_cifar10_resnet56_experiment_states_the_benchmark_recipe():
    cfg = compose_cfg("train", ["+experiment=cifar10_resnet56_channels"])
    assert cfg.data._target_ == "prune.data.CIFAR10DataModule"
    assert list(cfg.data.augment) == ["crop", "flip"] and cfg.data.crop_padding == 4
    assert cfg.model.net._target_ == "prune.models.ResNetCIFAR" and cfg.model.net.depth == 56
    assert cfg.trainer.max_epochs == 200 and cfg.data.batch_size == 128
    sgd = cfg.model.optimizer
    assert (sgd._target_, sgd.lr, sgd.momentum, sgd.weight_decay) == (
        "torch.optim.SGD",
        0.1,
        0.9,
        5e-4,
    )
    cosine = cfg.model.scheduler
    assert cosine._target_.endswith("CosineAnnealingLR") and cosine.T_max == 200
    assert cfg.retrain.max_epochs == 100 and list(cfg.retrain.scheduler.milestones) == [0, 60, 80]
    assert cfg.pruner.ratio == 0.31 and not cfg.pruner.global_ranking


@pytest.mark.slow
def test_cifar10_resnet56_experiment_runs_on_cifar_shaped_data(tmp_path):
    overrides = [
        "+experiment=cifar10_resnet56_channels",
        *TINY,
        "data.image_shape=[3,32,32]",
        "data.num_classes=10",
        "model.net.depth=8",  # ResNet-8 (6n + 2, n = 1): the layout of ResNet-56, fast
    ]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    results = train(cfg)
    assert results["status"] == "complete" and len(results["rounds"]) == 2
    assert results["data"]["in_shape"] == [3, 32, 32] and results["data"]["num_classes"] == 10
    assert results["data"]["augment"] == ["crop", "flip"]  # a synthetic source takes it too
    pruned = results["rounds"][1]
    # 31% of every group's channels: the same 2.11x as ResNet-56 (count_flops: 2 per MAC)
    assert 1 / pruned["prune/flops_ratio"] == pytest.approx(2.11, abs=0.05)
    plan = PruningPlan.from_dict(json.loads((tmp_path / "results.json").read_text())["plan"])
    dm = build_datamodule(cfg)
    dense = build_module(cfg, dm).net
    for group in find_groups(dense, torch.zeros(1, 3, 32, 32)):  # coupled channels cut together
        kept = [plan.keep[p] for p in group.producers]
        assert all(k == kept[0] for k in kept)
        assert len(kept[0]) == round(group.width * 0.69)


@pytest.mark.slow
def test_fashion_mnist_resnet18_experiment_runs_with_2x_fewer_flops(tmp_path):
    overrides = ["+experiment=fashion_mnist_resnet18_channels", *TINY, "data.num_classes=10"]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    assert cfg.model.net._target_ == "prune.models.TorchvisionNet" and cfg.model.name == "resnet18"
    results = train(cfg)
    assert results["status"] == "complete" and len(results["rounds"]) == 2
    assert results["rounds"][1]["prune/flops_ratio"] <= 0.5  # at least 2x fewer FLOPs


def test_a_model_the_graph_cannot_trace_stops_before_training(tmp_path):
    overrides = [
        *TINY,
        "data.image_shape=[3,32,32]",
        "model=torchvision",
        "model.name=shufflenet_v2_x0_5",  # a channel shuffle (reshape) after each block
        "pruner=magnitude",
    ]
    cfg = with_output(compose_cfg("train", overrides), tmp_path)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message and "cannot be pruned by channels" in message
    assert "after layer 'model.stage" in message
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_every_source_augments_its_training_batches():
    dm = SyntheticDataModule(num_train=40, num_test=10, augment=["crop", "flip"], crop_padding=2)
    dm.setup()
    assert dm.describe()["augment"] == ["crop", "flip"] and dm.describe()["crop_padding"] == 2
    assert dm.on_after_batch_transfer.__func__ is type(dm)._augment_then_module_hook
    plain = SyntheticDataModule(num_train=40, num_test=10)
    plain.setup()
    assert plain.describe()["augment"] == [] and "on_after_batch_transfer" not in vars(plain)
