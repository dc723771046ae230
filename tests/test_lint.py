"""The tree passes its linters: ruff, and mypy over every package, the benchmarks and the tests (`make lint`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPED = ("control", "kubelet", "kproxy", "kdns", "pocket", "benchmarks", "tests")


def lint(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing() -> None:
    done = lint("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing() -> None:
    done = lint("mypy", *TYPED)
    assert done.returncode == 0, done.stdout + done.stderr
