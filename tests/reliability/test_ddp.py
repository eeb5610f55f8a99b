"""DDP on 2 CPU processes (gloo) gives the same relevance statistics and plan as one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prune.pipeline import build_datamodule, build_module
from tests.conftest import compose_cfg
from tests.reliability.helpers import DDP_OVERRIDES, ROOT, child_env

SCRIPT = Path(__file__).with_name("ddp_explain.py")


def _explain(state: Path, out: Path, devices: int) -> dict:
    if devices == 1:  # one process: no need for a subprocess
        from tests.reliability.ddp_explain import main

        main(str(state), str(out), 1)
        return torch.load(out, weights_only=True)
    env = child_env(OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(SCRIPT), str(state), str(out), str(devices)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.slow
def test_ddp_relevance_stats_and_plan_match_one_process(tmp_path):
    cfg = compose_cfg("train", DDP_OVERRIDES)
    dm = build_datamodule(cfg)
    # 32 relevance images, eval batch 16: each of 2 ranks gets exactly one full batch, so the
    # DistributedSampler pads nothing and both runs sum the same samples
    assert len(dm.relevance_indices()) % (2 * dm.eval_batch_size) == 0
    torch.manual_seed(3)
    state = tmp_path / "state.pt"
    torch.save(build_module(cfg, dm).state_dict(), state)

    one = _explain(state, tmp_path / "one.pt", 1)
    two = _explain(state, tmp_path / "two.pt", 2)
    assert two["plan"] == one["plan"]
    a, b = one["stats"], two["stats"]
    assert b["class_counts"].sum() == a["class_counts"].sum() == 32
    for key in ("input", "input_abs", "per_class_input", "class_counts"):
        torch.testing.assert_close(
            b[key], a[key], rtol=1e-5, atol=1e-8
        )  # float32 relevance, other threads
    for key in ("channels", "channels_signed", "channels_unit_abs", "per_class_channels"):
        assert b[key].keys() == a[key].keys()
        for name in a[key]:
            torch.testing.assert_close(
                b[key][name], a[key][name], rtol=1e-5, atol=1e-8
            )  # float32 relevance, other threads
