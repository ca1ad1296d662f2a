"""The convenience layer's types hold: mypy --strict over the installed package, generated message
types included (the settings are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def test_the_package_type_checks_strictly() -> None:
    # From the project directory: mypy reads pyproject.toml there and, as src/ is not on its path,
    # checks the package as installed (with the stubs the build generated).
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "autopilot"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout
