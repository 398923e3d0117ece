"""Every script in benchmarks/ answers ``--help``.

argparse formats help text with ``%``, so a literal ``%`` in an option's help
(``'loss 0%/off'``) crashes ``--help`` with a ValueError, and nothing else in
the suite runs the help path: gossipsub_sim.py's did until 2026-12-08.
All scripts run in one interpreter (each import of the package and py-libp2p
costs a second of CPU), each as ``__main__`` with ``--help``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if "argparse" in p.read_text())

_DRIVER = r"""
import contextlib, io, json, runpy, sys
out = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(path, run_name="__main__")
        out[path] = "returned without printing help and exiting"
    except SystemExit as exc:
        text = buf.getvalue()
        out[path] = "ok" if exc.code in (0, None) and text.startswith("usage:") else f"exit {exc.code}: {text[:300]}"
    except BaseException as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_every_benchmark_prints_its_usage() -> None:
    assert len(SCRIPTS) >= 20, [p.name for p in SCRIPTS]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _DRIVER, *map(str, SCRIPTS)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(results) == len(SCRIPTS)
    failed = {Path(k).name: v for k, v in results.items() if v != "ok"}
    assert not failed, failed
