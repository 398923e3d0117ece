"""Shared pieces of the node benchmarks: percentiles, machine notes, daemons.

Benchmarks print figures; they never assert. Every script takes ``--json``
to print one machine-readable line instead of prose, which is how
``run_all.py`` collects them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

PYTHON = sys.executable


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    """P50/P99/min/max/mean of durations given in seconds, in milliseconds."""
    v = [s * 1000 for s in seconds]
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "p50_ms": round(percentile(v, 50), 3),
        "p99_ms": round(percentile(v, 99), 3),
        "min_ms": round(min(v), 3),
        "max_ms": round(max(v), 3),
        "mean_ms": round(sum(v) / len(v), 3),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on; load matters (other work shares the cores)."""
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "libp2p": _version("libp2p"),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": commit(),
    }


def commit() -> str:
    """The checkout's commit, with "+dirty" when the working tree differs
    from it ("?" outside a git checkout): which code a figure came from."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + ("+dirty" if dirty else "")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print ``result`` as one JSON line (``--json``) or indented for people."""
    result.setdefault("machine", machine())
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        print(json.dumps(result, indent=2), flush=True)


@contextlib.asynccontextmanager
async def temp_daemon(name: str, *flags: str, **kwargs: Any) -> AsyncIterator[Any]:
    """``agentp2p daemon`` in a fresh temporary home, removed afterwards: the
    test suite's :class:`agentp2p.testing.DaemonProcess` (127.0.0.1, ports
    chosen by the OS, API on; ``kwargs`` go to it, e.g. ``extra_env``).
    ``d.addrs``, ``d.pid``, ``d.port``; ``await d.wait_log_async(text, count=n)``."""
    from agentp2p.testing import DaemonProcess  # imports libp2p: only when a benchmark runs a daemon

    with tempfile.TemporaryDirectory(prefix="ap2p-bench-") as tmp:
        async with DaemonProcess(Path(tmp), *flags, name=name, **kwargs) as daemon:
            yield daemon


def tcp_bytes(port: int) -> dict[str, int]:
    """Bytes sent/received on the established loopback TCP sockets using local ``port``.

    Read from the kernel's tcp_info (``ss -ti``): exact payload byte counts of
    those connections only, unlike machine-wide interface counters.
    """
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    sent = sum(int(x) for x in re.findall(r"bytes_sent:(\d+)", out))
    received = sum(int(x) for x in re.findall(r"bytes_received:(\d+)", out))
    return {"sent": sent, "received": received, "sockets": len(re.findall(r"bytes_sent:", out))}


def until(pred: Any, timeout: float = 120.0, interval: float = 0.05) -> float:
    """Poll ``pred()`` (another process's state: nothing to wait on) until it
    is true; the monotonic time it became so (to ``interval``).
    :class:`TimeoutError` after ``timeout`` seconds."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s")
        time.sleep(interval)
    return time.monotonic()


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


async def count_stream(stream: Any, stall: float = 0.0) -> None:
    """A stream handler that waits ``stall`` seconds, counts every byte to the
    end of the stream, answers with the count and closes (throughput runs)."""
    import trio
    from libp2p.network.stream.exceptions import StreamEOF

    await trio.sleep(stall)
    n = 0
    try:
        while True:
            try:
                data = await stream.read(65536)
            except StreamEOF:
                break
            if not data:
                break
            n += len(data)
        await stream.write(str(n).encode())
        await stream.close()
    except Exception:  # noqa: BLE001 — a handler must not raise into py-libp2p's stream loop
        await stream.reset()
