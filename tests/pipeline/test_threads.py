"""The ``threads`` setting: ``auto`` resolves to the free cores, bad values stop the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from prune.run.entry import run
from prune.run.rounds import train
from prune.run.threads import TORCH_DEFAULT, apply_threads, available_cores, resolve_threads
from prune.run.validation import validate_config
from tests.conftest import compose_cfg, with_output
from tests.reliability.helpers import TINY


@pytest.fixture
def keep_threads() -> Iterator[int]:
    """Torch's intra-op thread count, restored after the test."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_auto_is_between_one_and_the_cores():
    assert 1 <= resolve_threads("auto") <= available_cores()


def test_auto_keeps_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads("auto") == 1


def test_auto_leaves_the_busy_cores(monkeypatch):
    monkeypatch.setattr("prune.run.threads.busy_cores", lambda *a, **k: 1.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads("auto") == max(1, min(available_cores(), TORCH_DEFAULT) - 1)


def test_auto_on_a_quiet_machine_is_torchs_default_at_most(monkeypatch):
    monkeypatch.setattr("prune.run.threads.busy_cores", lambda *a, **k: 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads("auto") == min(available_cores(), TORCH_DEFAULT)


def test_an_integer_passes_through():
    assert resolve_threads(1) == 1
    assert resolve_threads(7) == 7


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "two", None])
def test_resolve_refuses_bad_values(value):
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(value)


def test_apply_sets_torchs_count(keep_threads):
    assert apply_threads(1) == 1
    assert torch.get_num_threads() == 1
    auto = apply_threads("auto")
    assert torch.get_num_threads() == auto


@pytest.mark.parametrize("config", ["train", "evaluate"])
def test_the_default_is_auto(config):
    assert compose_cfg(config, []).threads == "auto"


@pytest.mark.parametrize("value", ["2", "auto"])
def test_good_values_pass_validation(value):
    validate_config(compose_cfg("train", [*TINY, f"threads={value}"]))


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5", "true", "null"])
def test_bad_values_stop_the_run_with_one_line(capsys, tmp_path, value):
    cfg = with_output(compose_cfg("train", [*TINY, f"threads={value}"]), tmp_path / "run")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(train, cfg)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("error: ") == 1, captured
    line = captured.err.strip()
    assert "threads" in line and "auto" in line and len(line.splitlines()) == 1, line
    assert not (tmp_path / "run" / "results.json").exists()


def test_train_runs_on_the_threads_set(keep_threads, tmp_path):
    cfg = with_output(compose_cfg("train", [*TINY, "threads=1"]), tmp_path / "run")
    assert train(cfg)["status"] == "complete"
    assert torch.get_num_threads() == 1
