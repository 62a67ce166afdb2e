"""The linters and checkers the deploy-file tests run: installed into the venv from the dev lock."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def tool(name: str, package: str) -> str:
    """A linter binary installed from requirements-dev.txt, next to this interpreter first."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} is missing: make venv (package {package})"
    return found


def lint(*command: str) -> None:
    """Run a linter; fail with its output unless it passes."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
