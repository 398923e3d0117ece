"""The agentp2p daemon, started from the CLI as a user runs it, with go-libp2p peers.

Not the library in-process: ``python -m agentp2p daemon`` in a subprocess,
its addresses read from stdout and its JSON logs from stderr.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentp2p.testing import DaemonProcess
from tests.interop.gopeer import GoPeer

pytestmark = pytest.mark.interop

PY_AGENT_VERSION = "agentp2p/0.1.0"


async def check_session(daemon: DaemonProcess, go: GoPeer) -> None:
    """What a Go peer must get from a daemon it is connected to."""
    await daemon.wait_log_async(f"peer connected: {go.peer_id}", 20)
    # The dialer's end is up first (it sends Noise's last message and Go then
    # still negotiates the muxer): wait for Go's end, no longer than that.
    await go.wait_until(lambda: _connected(go, daemon.peer_id), what="Go lists the daemon as a peer")
    info = await go.identify(daemon.peer_id)
    assert info["agent_version"] == PY_AGENT_VERSION
    assert {"/agentp2p/kad/1.0.0", "/meshsub/1.1.0", "/ipfs/ping/1.0.0"} <= set(info["protocols"])
    assert await go.ping(daemon.peer_id) > 0
    # The daemon answered Go's FIND_NODE: it is a DHT server in Go's table.
    assert await go.rt_wait(1) == 1


async def test_daemon_dials_go(go_peer_binary: Path, tmp_path: Path) -> None:
    async with GoPeer(go_peer_binary) as go, DaemonProcess(tmp_path, "--bootstrap", go.addr, name="d") as daemon:
        await check_session(daemon, go)
        assert await daemon.stop_async() == 0
        await go.wait_until(
            lambda: _not_connected(go, daemon.peer_id), what="Go sees the daemon leave"
        )
    assert all(not entry.get("raw") for entry in daemon.logs), "stderr must be JSON lines"


async def test_go_dials_daemon(go_peer_binary: Path, tmp_path: Path) -> None:
    async with DaemonProcess(tmp_path, name="d") as daemon, GoPeer(go_peer_binary, bootstrap=[daemon.addrs[0]]) as go:
        await check_session(daemon, go)


async def _connected(go: GoPeer, peer_id: str) -> bool:
    return peer_id in await go.peers()


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
    async with DaemonProcess(tmp_path, name="d") as daemon:
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
        assert await daemon.stop_async() == 0
