from __future__ import annotations

import itertools
import os

import pytest
import torch
from torch import nn

from prune.evaluation import cost
from prune.evaluation.cost import count_flops, count_params, latency, measure, state_dict_bytes


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
        "cost/latency_threads",
        "cost/latency_ms_b1_cpu",
        "cost/latency_ms_b1_cpu_iqr",
        "cost/latency_ms_b1_cpu_noisy",
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


def test_latency_spread_keys_are_consistent():
    out = measure(nn.Linear(10, 5), (10,), latency_batches=(1, 3), repeats=8, devices=["cpu"])
    for b in (1, 3):
        key = f"cost/latency_ms_b{b}_cpu"
        median, iqr, noisy = out[key], out[f"{key}_iqr"], out[f"{key}_noisy"]
        assert median > 0 and iqr >= 0
        assert isinstance(noisy, bool) and noisy == (iqr > cost.NOISY_IQR * median)


def _fake_times(monkeypatch, seconds):
    """Make every timed forward pass take the next of ``seconds`` (cycled), warm-up included."""
    times = itertools.cycle(seconds)
    monkeypatch.setattr(cost, "_time_once", lambda model, x: next(times))


def test_steady_timings_are_not_flagged(monkeypatch):
    _fake_times(monkeypatch, [1.00e-3, 1.01e-3, 0.99e-3, 1.02e-3])
    out = measure(nn.Linear(10, 5), (10,), latency_batches=(1,), repeats=20)
    assert out["cost/latency_ms_b1_cpu"] == pytest.approx(1.005)
    assert 0 < out["cost/latency_ms_b1_cpu_iqr"] < 0.05
    assert out["cost/latency_ms_b1_cpu_noisy"] is False


def test_widely_spread_timings_are_flagged(monkeypatch):
    # half the passes twice as slow (other work on the cores): IQR ~ the median
    _fake_times(monkeypatch, [1e-3, 2e-3, 1e-3, 2e-3, 1e-3])
    out = measure(nn.Linear(10, 5), (10,), latency_batches=(1,), repeats=20)
    median, iqr = out["cost/latency_ms_b1_cpu"], out["cost/latency_ms_b1_cpu_iqr"]
    assert iqr == pytest.approx(1.0) and iqr > cost.NOISY_IQR * median
    assert out["cost/latency_ms_b1_cpu_noisy"] is True


def test_spread_at_the_threshold_and_of_one_repeat():
    assert cost.spread([1.0, 1.0, 1.0, 1.0, 1.0]) == (1.0, 0.0, False)
    # quartiles 0.9 and 1.15 (inclusive): IQR 0.25, at NOISY_IQR of the median, not above it
    median, iqr, noisy = cost.spread([0.8, 0.9, 1.0, 1.15, 1.3])
    assert (median, noisy) == (1.0, False) and iqr == pytest.approx(cost.NOISY_IQR)
    assert cost.spread([0.8, 0.9, 1.0, 1.16, 1.3])[2] is True
    assert cost.spread([2.0]) == (2.0, 0.0, False)  # one repeat: no spread to measure


@pytest.fixture
def three_threads():
    """Torch set to 3 intra-op threads (neither 1 nor, on a 2-core machine, the default)."""
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(old)


def test_threads_are_fixed_while_timing_and_restored(monkeypatch, three_threads):
    before = torch.get_num_threads()
    seen = []

    def time_once(model, x):
        seen.append(torch.get_num_threads())  # the count each timed pass runs with
        return 1e-3

    monkeypatch.setattr(cost, "_time_once", time_once)
    out = measure(nn.Linear(10, 5), (10,), latency_batches=(1,), repeats=3, threads=1)
    assert out["cost/latency_threads"] == 1 and set(seen) == {1}
    assert torch.get_num_threads() == before

    seen.clear()
    out = measure(nn.Linear(10, 5), (10,), latency_batches=(1,), repeats=3)
    default = cost.default_threads()
    assert out["cost/latency_threads"] == default and set(seen) == {default}
    assert 1 <= default <= min(torch.get_num_threads(), os.cpu_count() or 1)
    assert torch.get_num_threads() == before


def test_threads_are_restored_when_timing_fails(monkeypatch, three_threads):
    before = torch.get_num_threads()

    def fails(model, x):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(cost, "_time_once", fails)
    with pytest.raises(RuntimeError, match="out of memory"):
        latency(nn.Linear(10, 5), (10,), batch=1, repeats=2, threads=1)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("threads", [0, -2, 1.5, "4", True])
def test_bad_thread_counts_are_refused_before_anything_is_timed(monkeypatch, threads):
    monkeypatch.setattr(cost, "_time_once", lambda model, x: pytest.fail("timed"))
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        measure(nn.Linear(10, 5), (10,), latency_batches=(1,), repeats=1, threads=threads)


# -- how the tables show it (prune.run.report) -------------------------------------------------
def _round(k: int, b1: tuple[float, float, bool], b256: tuple[float, float, bool]) -> dict:
    """A results row with the latency figures ``(median, iqr, noisy)`` in ms at batch 1, 256."""
    row = {"round": k, "test/acc": 0.97, "cost/flops": 1000, "cost/params": 100}
    for b, (median, iqr, noisy) in ((1, b1), (256, b256)):
        key = f"cost/latency_ms_b{b}_cpu"
        row.update({key: median, f"{key}_iqr": iqr, f"{key}_noisy": noisy})
    return {**row, "cost/latency_threads": 2}


def _cells(table, header: str) -> list[str]:
    column = next(c for c in table.columns if str(c.header) == header)
    return [str(cell) for cell in column.cells]


def test_rounds_table_shows_median_and_spread_and_marks_noisy_cells():
    from prune.run.report import NOISY_NOTE, plain_text, rounds_table

    rows = [
        _round(0, (0.0746, 0.0084, False), (1.118, 0.4, True)),
        _round(1, (0.05, 0, False), (123.4, 4.4, False)),
    ]
    table = rounds_table(rows, title="results by round")
    latency = [str(c.header) for c in table.columns if str(c.header).startswith("latency")]
    assert latency == ["latency ms\ncpu b=1", "latency ms\ncpu b=256"]  # no _iqr, _noisy columns
    assert _cells(table, "latency ms\ncpu b=1") == ["0.0746 ± 0.0042", "0.0500 ± 0.0000"]
    assert _cells(table, "latency ms\ncpu b=256") == ["1.12 ± 0.20*", "123 ± 2"]
    assert (
        table.notes == [NOISY_NOTE] == ["* spread too wide to trust: IQR above 25% of the median"]
    )
    lines = plain_text(table, ["warning: sample data"]).rstrip().splitlines()
    assert lines[-2:] == [NOISY_NOTE, "warning: sample data"]  # one line each, under the table
    assert any("median ± IQR/2" in line for line in lines)  # the caption says what ± means


def test_steady_latency_gets_no_mark_and_no_note():
    from prune.run.report import NOISY_NOTE, figures_table, plain_text, rounds_table

    rows = [_round(0, (0.0746, 0.0084, False), (1.118, 0.04, False))]
    for table in (rounds_table(rows), figures_table(rows[0])):
        text = plain_text(table)
        assert table.notes == [] and NOISY_NOTE not in text and "*" not in text


def test_evaluation_table_marks_a_noisy_latency():
    from prune.run.report import NOISY_NOTE, figures_table, plain_text

    table = figures_table(_round(0, (0.0746, 0.05, True), (1.118, 0.04, False)))
    figures = dict(zip(_cells(table, "figure"), _cells(table, "value"), strict=True))
    assert figures["latency ms, cpu, batch 1"] == "0.0746 ± 0.0250*"
    assert figures["latency ms, cpu, batch 256"] == "1.12 ± 0.02"
    assert plain_text(table).rstrip().splitlines()[-1] == NOISY_NOTE


def test_results_without_spread_show_the_median_alone():
    from prune.run.report import figures_table, plain_text, rounds_table

    row = {"round": 0, "test/acc": 0.97, "cost/flops": 1000, "cost/latency_ms_b1_cpu": 0.0746}
    assert _cells(rounds_table([row]), "latency ms\ncpu b=1") == ["0.0746"]
    assert "IQR" not in plain_text(rounds_table([row])) + plain_text(figures_table(row))
