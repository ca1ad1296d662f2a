"""The README's "start a task and print its events" example, run exactly as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs_as_written(tmp_path: Path, address: str, repository_url: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has a ```python block"
    example = blocks[0]
    assert len(example.strip().splitlines()) == 3, "the example is three lines"
    script = tmp_path / "example.py"
    script.write_text(example)
    run = subprocess.run(
        [sys.executable, str(script), repository_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={"AUTOPILOT_ADDRESS": address, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("#1 state"), lines
    assert lines[-1].endswith("finished SUCCEEDED: All done: nothing needed changing."), lines
