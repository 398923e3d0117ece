"""Every script in benchmarks/ answers ``--help``.

argparse formats help text with ``%``, so a literal ``%`` in an option's help
(``'loss 0%/off'``) crashes ``--help`` with a ValueError, and nothing else in
the suite runs the help path: gossipsub_sim.py's did until 2026-12-08.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py")
                 if "argparse" in p.read_text() and p.name != "__init__.py")


def test_the_benchmarks_have_command_lines() -> None:
    assert len(SCRIPTS) >= 20, [p.name for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_prints_usage(script: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage:"), r.stdout[:500]
