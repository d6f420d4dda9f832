"""Run one of the fault-injection scripts of ``scripts/`` and read its JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run_script(name: str, tmp_path: Path, *args: str, timeout: float) -> dict:
    """``scripts/NAME --work TMP/work ARGS``; its last stdout line (the summary), whose
    ``ok`` must agree with the exit code (0 when ok, 1 otherwise)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name), "--work", str(tmp_path / "work"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-2000:]
    summary = json.loads(lines[-1])
    assert proc.returncode == (0 if summary["ok"] else 1)
    return summary
