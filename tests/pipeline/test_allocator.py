"""``keep_freed_memory``: freed memory stays in the process, so repeated passes stop faulting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from prune.run.allocator import ENV, keep_freed_memory
from prune.run.entry import run
from prune.run.rounds import train
from prune.run.validation import validate_config
from tests.conftest import compose_cfg, with_output
from tests.reliability.helpers import TINY

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

#: a child process: the mean page faults per LRP pass of a small ViT under glibc's own
#: thresholds, then after ``keep_freed_memory`` (which cannot be undone, hence its own process)
CHILD = """
import json, resource, statistics, torch
from prune.lrp import Explainer
from prune.lrp.composites import get_composite
from prune.models.vit import ViT
from prune.run.allocator import keep_freed_memory
torch.manual_seed(0); torch.set_num_threads(1)
model = ViT((1, 28, 28), 10).eval()
x, target = torch.randn(64, 1, 28, 28), torch.zeros(64, dtype=torch.long)
explain = Explainer(model, get_composite("abslrp"))

def faults():
    # the mean over several passes: a kept heap still grows now and then to fit a new layout
    for _ in range(2):
        explain(x, target)
    per_pass = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        explain(x, target)
        per_pass.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return statistics.mean(per_pass)

system = faults()
kept = keep_freed_memory()
print(json.dumps({"system": system, "kept": kept, "kept_faults": faults()}))
"""


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_kept_memory_stops_the_page_faults_of_repeated_passes():
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True
    ).stdout
    faults = json.loads(out.strip().splitlines()[-1])
    assert faults["kept"]
    assert faults["kept_faults"] < faults["system"] / 3, faults


def test_off_or_set_by_the_user_leaves_the_allocator(monkeypatch):
    assert keep_freed_memory(False) is False
    monkeypatch.setenv(ENV[0], "65536")
    assert keep_freed_memory(True) is False


@pytest.mark.parametrize("config", ["train", "evaluate"])
def test_the_default_keeps_freed_memory(config):
    assert compose_cfg(config, []).keep_freed_memory is True


def test_bad_value_stops_the_run_with_one_line(capsys, tmp_path):
    validate_config(compose_cfg("train", [*TINY, "keep_freed_memory=false"]))
    cfg = with_output(compose_cfg("train", [*TINY, "keep_freed_memory=sometimes"]), tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(train, cfg)
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "keep_freed_memory" in line and "sometimes" in line and len(line.splitlines()) == 1
    assert not (tmp_path / "results.json").exists()
