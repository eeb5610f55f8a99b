from __future__ import annotations

import pytest
import torch

from prune.lrp import RelevanceStats


@pytest.mark.parametrize("consume", [False, True])
def test_stats_equal_a_naive_per_sample_reference(consume):
    gen = torch.Generator().manual_seed(0)
    k, n = 3, 10
    x = torch.randn(n, 1, 4, 4, generator=gen)
    conv = torch.randn(n, 5, 2, 2, generator=gen)
    lin = torch.randn(n, 6, generator=gen)
    y = torch.randint(0, k, (n,), generator=gen)
    stats = RelevanceStats(k)
    for idx in (slice(0, 4), slice(4, 7), slice(7, 10)):  # three uneven batches
        batch = [t[idx].clone() for t in (x, conv, lin)]  # consume=True may overwrite them
        # "fc2" shares fc's memory: neither may then be overwritten
        units = {"conv": batch[1], "fc": batch[2], "fc2": batch[2].view(-1, 6)}
        stats.update(batch[0], units, y[idx], consume=consume)

    ref_in = torch.zeros(1, 4, 4, dtype=torch.float64)
    ref_abs = torch.zeros_like(ref_in)
    ref_cls = torch.zeros(k, 1, 4, 4, dtype=torch.float64)
    ref_conv = torch.zeros(5, dtype=torch.float64)
    ref_conv_net = torch.zeros(5, dtype=torch.float64)
    ref_conv_cls = torch.zeros(k, 5, dtype=torch.float64)
    for i in range(n):  # one sample at a time, the definition
        ref_in += x[i].double()
        ref_abs += x[i].double().abs()
        ref_cls[y[i]] += x[i].double()
        per_channel = conv[i].double().abs().sum((1, 2))
        ref_conv += per_channel
        ref_conv_net += conv[i].double().sum((1, 2)).abs()  # positions cancel, then |.|
        ref_conv_cls[y[i]] += per_channel
    # float32 batch sums accumulated in float64: agreement to float32 rounding
    torch.testing.assert_close(stats.input, ref_in, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.input_abs, ref_abs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.per_class_input, ref_cls, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.channels["conv"], ref_conv, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.per_class_channels["conv"], ref_conv_cls, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.channels_unit_abs["conv"], ref_conv_net, rtol=1e-6, atol=1e-6)
    assert bool((ref_conv_net < ref_conv).all())  # the two absolute sums differ for channels
    for name in ("fc", "fc2"):
        torch.testing.assert_close(
            stats.channels_signed[name], lin.double().sum(0), rtol=1e-6, atol=1e-6
        )
        for key in ("channels", "channels_unit_abs"):  # a neuron has one position
            torch.testing.assert_close(
                getattr(stats, key)[name], lin.double().abs().sum(0), rtol=1e-6, atol=1e-6
            )
    assert stats.num_samples == n
    assert stats.class_counts.tolist() == torch.bincount(y, minlength=k).double().tolist()


@pytest.mark.parametrize("output", ["logit", "one", "softmax", "margin", "log_probability"])
def test_accumulator_explains_the_configured_output(output):
    """The callback, run by ``Trainer.validate``, sums what a direct LRP call with the matching
    output relevance gives (the margin: the label's logit against the strongest other one)."""
    from functools import partial

    from torch.utils.data import DataLoader, TensorDataset

    from prune import lrp
    from prune.callbacks.relevance import RelevanceAccumulator, explain_trainer
    from prune.models import MLP
    from prune.module import ClassifierModule

    torch.manual_seed(0)
    net = MLP((1, 6, 6), 4, hidden=(8,))
    x, y = torch.rand(12, 1, 6, 6), torch.randint(0, 4, (12,))
    record = ["layers.0"]
    acc = RelevanceAccumulator("epsilon", record, num_classes=4, output=output)
    trainer = explain_trainer(acc, accelerator="cpu")
    trainer.validate(
        ClassifierModule(net), DataLoader(TensorDataset(x, y), batch_size=5), verbose=False
    )
    seeds = {
        "logit": y,
        "one": torch.nn.functional.one_hot(y, 4).float(),
        "softmax": partial(lrp.softmax_gradient, labels=y),
        "margin": partial(lrp.logit_margin, labels=y),
        "log_probability": partial(lrp.log_probability, labels=y),
    }
    ref = lrp.attribute(net, x, seeds[output], "epsilon", record)
    torch.testing.assert_close(acc.stats.input, ref.input.sum(0).double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        acc.stats.channels_signed["layers.0"],
        ref.output["layers.0"].sum(0).double(),
        rtol=1e-5,
        atol=1e-6,
    )
