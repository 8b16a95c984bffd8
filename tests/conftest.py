"""Shared fixtures. Tests build tiny synthetic data in code; real-data tests skip without ../shared."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from emolib.paths import REPO_ROOT, shared_data

SHARED = shared_data()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The real dataset folder (``../shared/data``); skips the test with the reason when absent."""
    if SHARED is None:
        pytest.skip("real data not found: set EMOLIB_DATA or place shared/data beside the repo (CI has it)")
    return SHARED


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m emolib ARGS` in a fresh process, capturing stdout/stderr as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "emolib", *args], cwd=cwd or REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
