"""Shared helpers for the control API tests: in-process nodes with the API, daemon subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from agentp2p.application.api import ApiLimits, ApiService
from agentp2p.client import Client
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

CLI = [sys.executable, "-m", "agentp2p"]
READY_LOG = "control API listening on"


@dataclass
class ApiNode:
    node: Node
    api: ApiService
    client: Client


@contextlib.asynccontextmanager
async def api_node(limits: ApiLimits | None = None, services: tuple[Any, ...] = (), **config: Any) -> AsyncIterator[ApiNode]:
    """A node serving the API on 127.0.0.1 (any port), and an async client for it."""
    api = ApiService("127.0.0.1:0", limits=limits)
    async with Node(local_config(**config), services=[api, *services]) as node:
        with trio.fail_after(10):
            await api.ready.wait()
        async with Client(api.base_url.removeprefix("http://"), token=api.token) as client:
            yield ApiNode(node, api, client)


async def connected_pair(a: ApiNode, b: ApiNode, topic: str | None = None) -> None:
    """Connect a to b; with ``topic``, wait until each sees the other subscribed to it."""
    await a.node.connect(b.node.addrs[0])
    if topic is not None:
        await wait_until(lambda: b.node.peer_id in a.node.topic_peers(topic), what="a sees b's subscription")


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTP2P_")}
    env["HOME"] = str(home)  # never touch the real ~/.agentp2p
    return env


class DaemonProcess:
    """``agentp2p daemon`` as a subprocess in its own home, API on a free loopback port.

    Synchronous (threads read its output) so both trio tests and plain
    pytest tests (schemathesis) can use it. Readiness is the daemon's own
    "control API listening" log line, never a sleep.
    """

    def __init__(self, home: Path, *extra: str, api: str | None = "127.0.0.1:0") -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.identity = home / "identity.key"
        self.args = [
            *CLI, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", str(self.identity), "--json-logs",
            *(["--api", api] if api is not None else []), *extra,
        ]  # fmt: skip
        self.env = clean_env(home)
        self.addrs: list[str] = []
        self.logs: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def launch(self) -> DaemonProcess:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def wait_ready(self, timeout: float = 30.0) -> DaemonProcess:
        first = self.proc.stdout.readline().decode().strip()  # type: ignore[union-attr]
        if not first:
            self.proc.wait(timeout=10)
            raise AssertionError(f"daemon exited: {self.stderr_text()}")
        self.addrs = [first]
        self.wait_log(READY_LOG, timeout)
        return self

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        return self.launch().wait_ready(timeout)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"msg": raw.decode(errors="replace").rstrip(), "raw": True}
            self.logs.append(entry)
            self._lines.put(entry)
        self._lines.put(None)

    def wait_log(self, text: str, timeout: float = 30.0) -> dict[str, Any]:
        for entry in self.logs:
            if text in entry.get("msg", ""):
                return entry
        while True:
            try:
                entry = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"daemon did not log {text!r} within {timeout}s") from None
            if entry is None:
                raise AssertionError(f"daemon exited before logging {text!r}: {self.stderr_text()}")
            if text in entry.get("msg", ""):
                return entry

    def stderr_text(self) -> str:
        return "\n".join(e.get("msg", "") for e in self.logs)

    @property
    def peer_id(self) -> str:
        return self.addrs[0].rsplit("/p2p/", 1)[1]

    @property
    def api_addr(self) -> str:
        return (self.home / "api.addr").read_text().strip()

    @property
    def token(self) -> str:
        return (self.home / "api.token").read_text().strip()

    def client_args(self) -> list[str]:
        return ["--identity", str(self.identity)]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def daemons(*homes: Path) -> Iterator[list[DaemonProcess]]:
    """Several daemons, started in parallel (each start is mostly Python imports)."""
    procs = [DaemonProcess(home).launch() for home in homes]
    try:
        for proc in procs:
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.close()
