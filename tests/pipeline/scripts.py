"""Running the repository's benchmark scripts from tests, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str | Path) -> subprocess.CompletedProcess:
    """``python <script> <args>`` from the repository root; ``script`` relative to it."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
