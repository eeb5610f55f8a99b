"""DDP on 2 and 3 CPU processes (gloo) gives the relevance statistics, plan and test metrics of
one process, also when no world size divides the data: evaluation counts every sample once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from prune.data.batches import TensorBatchDataset
from prune.data.samplers import IndexBatchSampler
from prune.run.build import build_datamodule, build_module
from tests.conftest import compose_cfg
from tests.reliability.helpers import DDP_UNEVEN_OVERRIDES, ROOT, child_env

SCRIPT = Path(__file__).with_name("ddp_explain.py")
N_RELEVANCE, N_TEST = 31, 61  # neither divisible by 2 or 3 (see DDP_UNEVEN_OVERRIDES)
STAT_KEYS = ("input", "input_abs", "per_class_input", "class_counts")
LAYER_KEYS = ("channels", "channels_signed", "channels_unit_abs", "per_class_channels")


def _same(b: torch.Tensor, a: torch.Tensor) -> None:
    # float32 relevance summed in other batches and order: the rounding error scales with the
    # summands, so a signed sum that nearly cancels gets an absolute tolerance from the largest
    # entry (one pixel's per-class input relevance differs by 1e-8 at 1e-4)
    atol = 1e-6 * float(a.abs().max()) if a.numel() else 0.0
    torch.testing.assert_close(b, a, rtol=1e-5, atol=atol)


def _close(b: dict, a: dict) -> None:
    """Stats ``b`` equal ``a`` up to float32 rounding (other batches, other summation order)."""
    for key in STAT_KEYS:
        _same(b[key], a[key])
    for key in LAYER_KEYS:
        assert b[key].keys() == a[key].keys()
        for name in a[key]:
            _same(b[key][name], a[key][name])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, float]:
    """A saved random model and its test accuracy computed directly, in one process."""
    cfg = compose_cfg("train", DDP_UNEVEN_OVERRIDES)
    dm = build_datamodule(cfg)
    assert len(dm.relevance_indices()) == N_RELEVANCE and len(dm.test_set) == N_TEST
    torch.manual_seed(3)
    module = build_module(cfg, dm)
    state = tmp_path_factory.mktemp("ddp") / "state.pt"
    torch.save(module.state_dict(), state)
    with torch.no_grad():
        pred = module(module.normalize(dm.test_set.x)).argmax(1)
    return state, (pred == dm.test_set.y).double().mean().item()


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory) -> dict[int, tuple[int | None, Path]]:
    """``{devices: (return code, output folder)}`` of ddp_explain.py on 1, 2 and 3 processes.

    The DDP runs start together: most of their time is each process importing Lightning, which
    overlaps; the one-process run goes meanwhile in this process. Each DDP run is a session of
    its own, so that a run past the timeout goes with all its ranks.
    """
    state, _ = model
    env = child_env(OMP_NUM_THREADS="1")
    started = {}
    for devices in (2, 3):
        out = tmp_path_factory.mktemp(f"ddp{devices}")
        cmd = [sys.executable, str(SCRIPT), str(state), str(out), str(devices)]
        with open(out / "stderr.txt", "w") as err:  # a file: a full pipe would stall a rank
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=err, start_new_session=True)
        started[devices] = proc, out
    one = tmp_path_factory.mktemp("ddp1")
    from tests.reliability.ddp_explain import run

    run(str(state), str(one), 1)
    done: dict[int, tuple[int | None, Path]] = {1: (0, one)}
    for devices, (proc, out) in started.items():
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the run's session: its ranks, and only them
            proc.wait()
        done[devices] = proc.returncode, out
    return done


def _stderr(out: Path) -> str:
    path = out / "stderr.txt"
    return path.read_text()[-3000:] if path.exists() else ""


def _load(runs: dict, devices: int, name: str = "run.pt") -> dict:
    _, out = runs[devices]
    assert (out / name).exists(), _stderr(out)
    return torch.load(out / name, weights_only=True)


def test_eval_batch_sampler_counts_every_sample_once_over_the_ranks():
    from prune.data.samplers import EvalBatchSampler

    data = TensorBatchDataset(torch.zeros(31, 1), torch.zeros(31, dtype=torch.long))
    for ranks in (1, 2, 3, 4):
        # what Lightning injects into an evaluation loader under DDP, and how it rebuilds ours
        shards = [DistributedSampler(data, ranks, r, shuffle=False) for r in range(ranks)]
        seen = torch.cat([torch.cat(list(EvalBatchSampler(s, 5))) for s in shards])
        assert sorted(seen.tolist()) == list(range(31))
        lengths = [len(EvalBatchSampler(s, 5)) for s in shards]
        assert lengths == [len(list(EvalBatchSampler(s, 5))) for s in shards]
    # training keeps the padded sampler: equal shards (so equal steps), 32 samples in all
    padded = [IndexBatchSampler(DistributedSampler(data, 2, r, shuffle=False), 5) for r in (0, 1)]
    assert [sum(map(len, p)) for p in padded] == [16, 16]
    # more ranks than samples: every rank raises the same error (none is left waiting)
    with pytest.raises(ValueError, match="cannot evaluate 3 samples on 4 processes"):
        EvalBatchSampler(DistributedSampler(TensorBatchDataset(*data[:3]), 4, 0), 5)


@pytest.mark.slow
@pytest.mark.parametrize("devices", [2, 3])
def test_ddp_relevance_stats_and_plan_match_one_process(devices, runs):
    one, many = _load(runs, 1), _load(runs, devices)
    # every relevance image counted once: padded shards would count 32 (2 ranks) or 33 (3)
    assert one["stats"]["class_counts"].sum() == N_RELEVANCE
    assert many["stats"]["class_counts"].sum() == N_RELEVANCE
    _close(many["stats"], one["stats"])
    assert many["plan"] == one["plan"]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [2, 3])
def test_ddp_test_metrics_match_one_process(devices, model, runs):
    direct_acc = model[1]
    one, many = _load(runs, 1), _load(runs, devices)
    assert one["test_count"] == many["test_count"] == N_TEST
    assert one["test"]["acc"] == pytest.approx(direct_acc, abs=1e-7)  # float32 metric
    assert many["test"]["acc"] == one["test"]["acc"]  # the same counts: the same float
    assert many["test"]["loss"] == pytest.approx(one["test"]["loss"], rel=1e-5)


@pytest.mark.slow
def test_ddp_reduce_stats_joins_ranks_without_sums(runs):
    """A rank that got no batch (no lazily created sums) still takes part in the reduction."""
    returncode, out = runs[3]
    assert returncode == 0, _stderr(out)
    run, reduced = _load(runs, 3), _load(runs, 3, "reduce.pt")
    _close(reduced["only_rank0"], run["stats"])
    assert reduced["none_samples"] == 0
