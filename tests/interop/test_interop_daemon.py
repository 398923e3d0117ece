"""The agentp2p daemon, started from the CLI as a user runs it, with go-libp2p peers.

Not the library in-process: ``python -m agentp2p daemon`` in a subprocess,
its addresses read from stdout and its JSON logs from stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.interop.gopeer import GoPeer

pytestmark = pytest.mark.interop

PY_AGENT_VERSION = "agentp2p/0.1.0"


class Daemon:
    """An ``agentp2p daemon`` subprocess (the pattern of tests/test_daemon.py)."""

    def __init__(self, tmp: Path, name: str, *extra: str) -> None:
        self.args = [
            sys.executable, "-m", "agentp2p", "daemon",
            "--listen", "/ip4/127.0.0.1/tcp/0",
            "--identity", str(tmp / f"{name}.key"),
            "--json-logs",
            # The control API on an ephemeral port: its default port is shared
            # by every daemon on the machine (and parallel test runs).
            "--api", "127.0.0.1:0",
            *extra,
        ]  # fmt: skip
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTP2P_")}
        self.env["HOME"] = str(tmp)  # never touch the real ~/.agentp2p
        self.addrs: list[str] = []
        self.logs: list[dict[str, object]] = []
        self._log_event = trio.Event()
        self._stderr_closed = False

    @property
    def peer_id(self) -> str:
        return self.addrs[0].rsplit("/p2p/", 1)[1]

    async def __aenter__(self) -> Daemon:
        self.proc = await trio.lowlevel.open_process(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env
        )
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        nursery.start_soon(self._read_stderr)
        buf = b""
        with trio.fail_after(30):
            while b"\n" not in buf:
                chunk = await self.proc.stdout.receive_some()
                assert chunk, f"daemon exited before printing its address: {self.logs[-5:]}"
                buf += chunk
        self.addrs = [line for line in buf.decode().splitlines() if line]
        return self

    async def _read_stderr(self) -> None:
        try:
            await self._read_stderr_lines()
        finally:
            self._stderr_closed = True
            self._log_event.set()

    async def _read_stderr_lines(self) -> None:
        buf = b""
        while chunk := await self.proc.stderr.receive_some():
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                # Shown by pytest for failing tests only.
                print(f"[daemon] {line.decode(errors='replace')}", file=sys.stderr)
                try:
                    self.logs.append(json.loads(line))
                except ValueError:
                    self.logs.append({"msg": line.decode(errors="replace"), "raw": True})
            self._log_event.set()
            self._log_event = trio.Event()

    async def wait_log(self, text: str, timeout: float = 20) -> None:
        with trio.fail_after(timeout):
            while not any(text in str(entry.get("msg", "")) for entry in self.logs):
                if self._stderr_closed:
                    raise AssertionError(f"daemon exited before logging {text!r}; last lines: {self.logs[-5:]}")
                await self._log_event.wait()

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            return await self.proc.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        # The stderr reader ends by itself once the process is gone.
        await self._nursery_cm.__aexit__(None, None, None)


async def check_session(daemon: Daemon, go: GoPeer) -> None:
    """What a Go peer must get from a daemon it is connected to."""
    await daemon.wait_log(f"peer connected: {go.peer_id}")
    assert daemon.peer_id in await go.peers()
    info = await go.identify(daemon.peer_id)
    assert info["agent_version"] == PY_AGENT_VERSION
    assert {"/ipfs/kad/1.0.0", "/meshsub/1.1.0", "/ipfs/ping/1.0.0"} <= set(info["protocols"])
    assert await go.ping(daemon.peer_id) > 0
    # The daemon answered Go's FIND_NODE: it is a DHT server in Go's table.
    assert await go.rt_wait(1) == 1


async def test_daemon_dials_go(go_peer_binary: Path, tmp_path: Path) -> None:
    async with GoPeer(go_peer_binary) as go, Daemon(tmp_path, "d", "--bootstrap", go.addr) as daemon:
        await check_session(daemon, go)
        assert await daemon.stop() == 0
        await go.wait_until(
            lambda: _not_connected(go, daemon.peer_id), what="Go sees the daemon leave"
        )
    assert all(not entry.get("raw") for entry in daemon.logs), "stderr must be JSON lines"


async def test_go_dials_daemon(go_peer_binary: Path, tmp_path: Path) -> None:
    async with Daemon(tmp_path, "d") as daemon, GoPeer(go_peer_binary, bootstrap=[daemon.addrs[0]]) as go:
        await check_session(daemon, go)


async def _not_connected(go: GoPeer, peer_id: str) -> bool:
    return peer_id not in await go.peers()


async def test_daemon_serves_the_dht_to_go_peers(go_peer_binary: Path, tmp_path: Path) -> None:
    """Go peers that only know the daemon use it as their DHT.

    Each record is written while the daemon is the writer's only DHT peer,
    and read by a Go peer that joined afterwards, once the writer has left:
    only the daemon can answer. PUT_VALUE is acknowledged, so the writer may
    leave at once; ADD_PROVIDER is not (a Go peer that quits right after
    providing can lose the record even to another Go peer), so the provider
    stays until a first lookup has found it.
    """
    async with Daemon(tmp_path, "d") as daemon:
        async with GoPeer(go_peer_binary, bootstrap=[daemon.addrs[0]]) as writer:
            await writer.rt_wait(1)
            await writer.put("/agentp2p/interop/via-daemon", b"stored in the daemon")
        async with GoPeer(go_peer_binary, bootstrap=[daemon.addrs[0]]) as provider:
            await provider.rt_wait(1)
            await provider.provide("interop:via-daemon")
            provider_id = provider.peer_id
            async with GoPeer(go_peer_binary, bootstrap=[daemon.addrs[0]]) as reader:
                await reader.rt_wait(1)
                assert await reader.get("/agentp2p/interop/via-daemon") == b"stored in the daemon"

                async def found() -> bool:
                    return provider_id in await reader.find_providers("interop:via-daemon", 1)

                await reader.wait_until(found, timeout=10, interval=0.05, what="the provider via the daemon")
                # Peer routing through the daemon, while the provider is up.
                assert any(provider.addr.startswith(a) for a in await reader.find_peer(provider_id))
        async with GoPeer(go_peer_binary, bootstrap=[daemon.addrs[0]]) as late:
            await late.rt_wait(1)
            assert await late.find_providers("interop:via-daemon", 5) == [provider_id]
            assert await late.get("/agentp2p/interop/via-daemon") == b"stored in the daemon"
        assert await daemon.stop() == 0
