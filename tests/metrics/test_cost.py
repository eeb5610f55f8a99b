from __future__ import annotations

import pytest
import torch
from torch import nn

from prune.metrics.cost import count_flops, count_params, latency, measure, state_dict_bytes


def test_flops_of_linear_layer_is_two_macs():
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300))
    assert count_flops(net, (1, 28, 28)) == 2 * 784 * 300


def test_flops_of_conv_layer_is_two_macs():
    net = nn.Conv2d(1, 20, 5)
    # output 20 x 24 x 24 positions, each a 1x5x5 dot product
    assert count_flops(net, (1, 28, 28)) == 2 * 20 * 24 * 24 * 25


def test_params_bytes_latency():
    net = nn.Linear(10, 5)
    assert count_params(net) == 55
    assert state_dict_bytes(net) > 55 * 4
    assert latency(net, (10,), batch=4, repeats=3, warmup=1) > 0
    out = measure(net, (10,), latency_batches=(1,), repeats=2)
    assert set(out) == {
        "cost/flops",
        "cost/params",
        "cost/state_dict_bytes",
        "cost/latency_ms_b1_cpu",
    }
    assert torch.get_num_threads() >= 1


def test_latency_on_named_devices():
    net = nn.Linear(10, 5)
    out = measure(net, (10,), latency_batches=(1, 3), repeats=2, devices=["cpu"])
    assert {"cost/latency_ms_b1_cpu", "cost/latency_ms_b3_cpu"} <= set(out)
    with pytest.raises(ValueError, match="'tpu'"):
        measure(net, (10,), latency_batches=(1,), repeats=1, devices=["tpu"])
    if torch.cuda.is_available():  # a copy is timed on the GPU; the model stays where it was
        out = measure(net, (10,), latency_batches=(1,), repeats=2, devices=["cpu", "cuda"])
        assert out["cost/latency_ms_b1_cuda"] > 0
        assert next(net.parameters()).device.type == "cpu"
    else:
        with pytest.raises(ValueError, match="no GPU"):
            measure(net, (10,), latency_batches=(1,), repeats=1, devices=["cuda"])
