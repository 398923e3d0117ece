"""Shared pieces of the node benchmarks: percentiles, machine notes, daemons.

Benchmarks print figures; they never assert. Every script takes ``--json``
to print one machine-readable line instead of prose, which is how
``run_all.py`` collects them.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import trio

PYTHON = sys.executable
CLI = [PYTHON, "-m", "agentp2p"]
LOCAL = "/ip4/127.0.0.1/tcp/0"


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
    }


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


def child_env(home: Path) -> dict[str, str]:
    """Environment for a daemon subprocess: no AGENTP2P_* leaks, a private HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTP2P_")}
    env["HOME"] = str(home)
    return env


class Daemon:
    """``python -m agentp2p daemon`` as a trio subprocess, on 127.0.0.1.

    ``async with Daemon(name) as d``: ``d.addrs`` are the full addresses it
    printed, ``d.pid`` its process id; ``await d.wait_log(text)`` waits for a
    JSON log line containing ``text``.
    """

    def __init__(
        self,
        name: str,
        *extra: str,
        tmp: Path | None = None,
        env: dict[str, str] | None = None,
        cli: Sequence[str] | None = None,
    ) -> None:
        self._tmpdir = None if tmp is not None else tempfile.TemporaryDirectory(prefix="ap2p-bench-")
        self.tmp = tmp or Path(self._tmpdir.name)  # type: ignore[union-attr]
        self.args = [*(cli or CLI), "daemon", "--listen", LOCAL, "--identity", str(self.tmp / f"{name}.key"), "--json-logs", *extra]
        self.env = env or child_env(self.tmp)
        self.addrs: list[str] = []
        self.logs: list[dict[str, Any]] = []
        self._changed = trio.Event()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        m = re.search(r"/tcp/(\d+)", self.addrs[0])
        assert m
        return int(m.group(1))

    async def __aenter__(self) -> Daemon:
        self.proc = await trio.lowlevel.open_process(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._read_stderr)
        buf = b""
        with trio.fail_after(30):
            while b"\n" not in buf:
                chunk = await self.proc.stdout.receive_some()  # type: ignore[union-attr]
                if not chunk:
                    raise RuntimeError(f"daemon exited before printing its address: {self.logs[-3:]}")
                buf += chunk
        self.addrs = [line for line in buf.decode().splitlines() if line.strip()]
        return self

    async def _read_stderr(self) -> None:
        buf = b""
        while True:
            chunk = await self.proc.stderr.receive_some()  # type: ignore[union-attr]
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    self.logs.append(json.loads(line))
                except ValueError:
                    self.logs.append({"msg": line.decode(errors="replace")})
            self._changed.set()
            self._changed = trio.Event()

    async def wait_log(self, text: str, timeout: float = 30) -> None:
        with trio.fail_after(timeout):
            while not any(text in str(e.get("msg", "")) for e in self.logs):
                await self._changed.wait()

    async def wait_count(self, text: str, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` log lines contain ``text``."""
        with trio.fail_after(timeout):
            while sum(text in str(e.get("msg", "")) for e in self.logs) < count:
                await self._changed.wait()

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.proc.returncode is None:
                self.proc.terminate()
                with trio.move_on_after(5):
                    await self.proc.wait()
                if self.proc.returncode is None:
                    self.proc.kill()
                    await self.proc.wait()
        finally:
            self._nursery.cancel_scope.cancel()
            await self._nursery_cm.__aexit__(None, None, None)
            if self._tmpdir is not None:
                self._tmpdir.cleanup()


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


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)
