"""Our inbound connection path (agentp2p/network/inbound.py) against the
library's: slots released per connection, bounded pending handshakes with a
deadline, per-IP admission and banned peers refused."""

from __future__ import annotations

import contextlib

import pytest
import trio

from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import PeerInfo

from agentp2p.network.inbound import inbound_gate
from agentp2p.network.resources import ResourceLimits
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

from agentp2p.testing import LOOPBACK
from agentp2p.testing import library_host as plain_host


def _small_library_host(max_connections: int):  # type: ignore[no-untyped-def]
    cfg = ConnectionConfig(
        max_connections=max_connections,
        high_watermark=max_connections,
        low_watermark=0,
        min_connections=0,
        max_connections_per_peer=1,
    )
    return plain_host(connection_config=cfg)


async def _cycle(dialer, victim_id, victim_addrs, victim_connected) -> bool:  # type: ignore[no-untyped-def]
    """One connect/disconnect; True if the dial succeeded."""
    dialer.get_network().unblock_peer(victim_id)
    try:
        with trio.fail_after(10):
            await dialer.connect(PeerInfo(victim_id, victim_addrs))
    except Exception:
        return False
    await dialer.disconnect(victim_id)
    await wait_until(lambda: not victim_connected(), 10, "victim to see the disconnect")
    return True


async def test_library_locks_out_inbound_after_max_connections_cycles() -> None:
    """py-libp2p holds an inbound slot until the swarm stops: after N connect/
    disconnect cycles (N = max_connections), every inbound dial is refused."""
    victim, dialer = _small_library_host(4), plain_host()
    async with victim.run([LOOPBACK]), dialer.run([LOOPBACK]):
        vid, vaddrs = victim.get_id(), victim.get_transport_addrs()
        connected = lambda: bool(victim.get_network().get_connections(dialer.get_id()))  # noqa: E731
        results = [await _cycle(dialer, vid, vaddrs, connected) for _ in range(6)]
        assert results[:4] == [True] * 4
        assert results[4:] == [False, False], "the library's inbound limiter should be exhausted"
        assert not victim.get_network().get_connections()


async def _node_survives_cycles(cycles: int, max_connections: int, dialers: int = 1) -> None:
    """``cycles`` connect/disconnect cycles in all, by ``dialers`` library
    hosts at once (the library's disconnect sleeps 0.2 s: one dialer does
    five cycles a second)."""
    assert cycles % dialers == 0 and dialers < max_connections
    async with Node(local_config(max_connections=max_connections, swim=False)) as victim:
        hosts = [plain_host(connection_config=ConnectionConfig(max_connections_per_peer=1)) for _ in range(dialers)]
        async with contextlib.AsyncExitStack() as stack:
            for host in hosts:
                await stack.enter_async_context(host.run([LOOPBACK]))
            refused: list[str] = []

            async def cycle_from(dialer) -> None:  # type: ignore[no-untyped-def]
                connected = lambda: victim.is_connected(dialer.get_id())  # noqa: E731
                for i in range(cycles // dialers):
                    if not await _cycle(dialer, victim.peer_id, victim.listen_addrs, connected):
                        refused.append(f"cycle {i} of {dialer.get_id()}")
                        return

            async with trio.open_nursery() as nursery:
                for host in hosts:
                    nursery.start_soon(cycle_from, host)
            assert not refused, refused
        # every slot came back
        await wait_until(lambda: victim.resources.inbound_connections == 0, 10, "inbound slots released")
        assert victim.resources.pending_handshakes == 0
        assert not victim.resources._per_ip
        gate = inbound_gate(victim.host)
        assert gate is not None and gate.stats["accepted"] == cycles
        async with Node(local_config()) as late:
            await late.connect(victim.addrs[0])
            assert await late.ping(victim.peer_id) > 0


async def test_node_accepts_inbound_after_many_cycles_small_limit() -> None:
    """Same small limit as the library test above, three times the cycles."""
    await _node_survives_cycles(12, max_connections=4)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_node_accepts_inbound_after_1000_cycles() -> None:
    await _node_survives_cycles(1000, max_connections=300, dialers=10)


async def _silent_socket(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def _closed_by_peer(sock: trio.SocketStream, timeout: float) -> bool:
    """Read until EOF (the victim closed it) or ``timeout``; True on EOF."""
    with trio.move_on_after(timeout):
        try:
            while await sock.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


def _port(node: Node) -> int:
    return int(node.listen_addrs[0].value_for_protocol("tcp"))


async def test_pending_table_evicts_oldest_silent_socket() -> None:
    limits = ResourceLimits(max_pending_handshakes=4, handshake_timeout=60)
    async with Node(local_config(resources=limits, swim=False)) as victim:
        gate = inbound_gate(victim.host)
        assert gate is not None
        socks = []
        for i in range(10):
            socks.append(await _silent_socket(_port(victim)))
            await wait_until(lambda: gate.pending + gate.stats["evicted"] == i + 1, 5, "socket registered")
        assert gate.pending == 4 and gate.stats["evicted"] == 6
        # the six oldest were closed, the four newest are still pending
        for s in socks[:6]:
            assert await _closed_by_peer(s, 5)
        # an honest dial gets through while the table is full of silent sockets
        async with Node(local_config()) as honest:
            await honest.connect(victim.addrs[0])
            assert await honest.ping(victim.peer_id) > 0
        for s in socks:
            await s.aclose()


async def test_silent_socket_is_closed_at_the_handshake_deadline() -> None:
    limits = ResourceLimits(handshake_timeout=0.5)
    async with Node(local_config(resources=limits, swim=False)) as victim:
        sock = await _silent_socket(_port(victim))
        assert await _closed_by_peer(sock, 10)
        gate = inbound_gate(victim.host)
        assert gate is not None
        await wait_until(lambda: gate.stats["timed_out"] == 1, 5, "timeout counted")
        await wait_until(lambda: victim.resources.pending_handshakes == 0 and not victim.resources._per_ip, 5)
        await sock.aclose()


async def test_per_ip_limit_applies_when_loopback_is_limited() -> None:
    limits = ResourceLimits(limit_loopback=True, max_connections_per_ip=2, handshake_timeout=60)
    async with Node(local_config(resources=limits, swim=False)) as victim:
        first = [await _silent_socket(_port(victim)) for _ in range(2)]
        gate = inbound_gate(victim.host)
        assert gate is not None
        await wait_until(lambda: gate.pending == 2, 5, "two pending")
        third = await _silent_socket(_port(victim))
        assert await _closed_by_peer(third, 5)
        assert gate.stats["refused_ip"] == 1
        for s in first:
            assert not await _closed_by_peer(s, 0.2)
            await s.aclose()
        await third.aclose()


async def test_banned_peer_is_refused_inbound_and_outbound() -> None:
    async with Node(local_config(swim=False)) as victim, Node(local_config(swim=False)) as other:
        victim.penalties.ban(other.peer_id, "test")
        with pytest.raises(Exception):
            await other.connect(victim.addrs[0])
        assert not victim.is_connected(other.peer_id)
        # the library's own dials to a banned peer fail too (gate after Noise)
        with pytest.raises(Exception):
            with trio.fail_after(10):
                await victim.host.connect(PeerInfo(other.peer_id, other.listen_addrs))
        assert not victim.is_connected(other.peer_id)
        victim.penalties.unban(other.peer_id)
        other.host.get_network().unblock_peer(victim.peer_id)
        await other.connect(victim.addrs[0])
        assert await other.ping(victim.peer_id) > 0


async def test_a_stopping_node_closes_what_it_accepted_and_refuses_newcomers() -> None:
    # CI caught it (test_host.py::test_graceful_shutdown_closes_connections,
    # 1 run in 10 here): a peer's SWIM redialed a node that was stopping, its
    # listener still open; the connection arrived after the node had closed
    # its connections, nobody closed it, and the peer kept it for 10 s.
    from agentp2p.errors import DialError

    cfg = {"swim": False}
    async with Node(local_config(**cfg)) as a, Node(local_config(**cfg)) as b, Node(local_config(**cfg)) as c:
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), 10, "a to have b's connection")
        gate = inbound_gate(a.host)
        assert gate is not None
        await gate.close()
        # What it had accepted is closed, and both ends see it.
        await wait_until(lambda: not b.is_connected(a.peer_id) and not a.is_connected(b.peer_id), 10,
                         "b's connection to a to close")
        # A newcomer's socket is closed at once: its dial fails, nothing stays.
        with trio.fail_after(15), pytest.raises(DialError):
            await c.connect(a.addrs[0])
        assert gate.stats["refused_closing"] >= 1
        assert not a.is_connected(c.peer_id) and not c.is_connected(a.peer_id)
        await gate.close()  # idempotent


async def test_stopping_ends_a_handshake_under_way_without_calling_it_a_timeout() -> None:
    # A handshake timeout far beyond the wait below: only the stop can close the socket in time.
    async with Node(local_config(swim=False, resources=ResourceLimits(handshake_timeout=60))) as a:
        gate = inbound_gate(a.host)
        assert gate is not None
        silent = await trio.open_tcp_stream("127.0.0.1", _port(a))  # connects, never speaks: a pending handshake
        try:
            await wait_until(lambda: gate.pending == 1, 10, "the silent socket to be pending")
            gate.stop_accepting()
            with trio.fail_after(5):  # the watchdog closes it at once, not after the handshake timeout
                while await silent.receive_some(4096):
                    pass
            await wait_until(lambda: gate.pending == 0, 10, "the handshake to end")
            assert gate.stats["timed_out"] == 0 and gate.stats["failed"] == 0
            assert gate.stats["refused_closing"] == 1
        finally:
            await silent.aclose()
