"""benchmarks/lrp_ab.py: two revisions' explainers in one process, checked to agree, then timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "lrp_ab.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def _has_head() -> bool:
    probe = ["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", "HEAD"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_head(), reason="needs a git checkout with a HEAD")
def test_the_same_revision_on_both_sides_gives_the_same_map_and_a_paired_ratio() -> None:
    args = ["--model", "mlp", "--preset", "epsilon", "--batch", "4", "--rounds", "3"]
    done = _run("--base", "HEAD", *args, "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert "largest difference of the maps, relative to the largest value: 0" in done.stdout
    assert "new / base, paired: median" in done.stdout
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True
    ).stdout
    assert "lrp-ab-" not in worktrees  # the temporary checkout is removed


def test_too_few_rounds_are_refused_in_one_line() -> None:
    done = _run("--base", "HEAD", "--rounds", "2")
    assert done.returncode == 2
    assert "--rounds" in done.stderr.strip().splitlines()[-1]


def test_an_unknown_revision_is_refused_in_one_line() -> None:
    done = _run("--base", "no-such-revision")
    assert done.returncode == 2
    assert "'no-such-revision' names no commit" in done.stderr.strip().splitlines()[-1]
