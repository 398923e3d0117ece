"""A flood of QUIC Initial packets (each a new connection ID, never answered)
cannot grow the listener's pending handshakes past the cap, and an honest
peer still connects during it (agentp2p/network/quic/listener.py)."""

from __future__ import annotations

import pytest
import trio
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from libp2p.transport.quic.listener import QUICListener

from agentp2p.network import quic
from agentp2p.network.quic import listener as listener_module
from agentp2p.network.quic.listener import DROPPED_RATE, DROPPED_SHORT, EVICTED
from agentp2p.network.resources import ResourceLimits
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
CAP = 8
FLOOD = 60


def _initials(port: int, n: int) -> list[bytes]:
    """The first datagram of ``n`` fresh QUIC v1 handshakes (ALPN libp2p)."""
    out = []
    for _ in range(n):
        conn = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["libp2p"]))
        conn.connect(("127.0.0.1", port), now=0.0)
        out.append(conn.datagrams_to_send(now=0.0)[0][0])
    return out


async def test_library_listener_keeps_every_flooded_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """py-libp2p's own listener, for comparison: every Initial of the flood
    stays pending (until its 10 s sweep finds it 15 s old)."""
    async with Node(local_config(listen=[QUIC], swim=False, resources=ResourceLimits(max_pending_handshakes=CAP))) as a:
        monkeypatch.setattr(QUICListener, "_handle_new_connection", quic.LIBRARY["handle_new_connection"])
        listener, port = _listener(a)
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            for datagram in _initials(port, FLOOD):
                await sock.sendto(datagram, ("127.0.0.1", port))
        await wait_until(lambda: len(listener._registry._pending) == FLOOD, what="every handshake pending")


def _listener(node: Node) -> tuple[QUICListener, int]:
    listener = next(x for x in node.host.get_network().listeners.values() if isinstance(x, QUICListener))
    return listener, int(node.addrs[0].split("/udp/")[1].split("/")[0])


async def test_initial_flood_is_capped_and_honest_peers_get_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap, not the handshake rate limit (next test), is under test here.
    monkeypatch.setattr(listener_module, "HANDSHAKES_PER_IP", (1e6, 1e6))
    monkeypatch.setattr(listener_module, "HANDSHAKES", (1e6, 1e6))
    async with Node(local_config(listen=[QUIC], swim=False, resources=ResourceLimits(max_pending_handshakes=CAP))) as a:
        listener, port = _listener(a)
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(listener._registry._pending))
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            socks = [trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) for _ in range(FLOOD)]
            try:
                # Each Initial from its own port: every address is one more the registry maps.
                for sock, datagram in zip(socks, _initials(port, FLOOD)):
                    await sock.sendto(datagram, ("127.0.0.1", port))
                await wait_until(lambda: getattr(listener, EVICTED, 0) >= FLOOD - CAP, what="the flood's evictions")
                registry = listener._registry
                # Evicted handshakes are forgotten under every ID and address.
                assert len(registry._initial_connection_ids) <= CAP
                assert len(registry._addr_to_connection_id) <= CAP
                # During the flood's aftermath (its handshakes still pending), an honest peer connects.
                async with Node(local_config(listen=[QUIC], swim=False)) as b:
                    await b.connect(a.addrs[0])
                    assert await b.ping(a.peer_id) > 0
            finally:
                for sock in socks:
                    sock.close()
            nursery.cancel_scope.cancel()
        assert peak <= CAP


async def test_short_initials_make_no_state() -> None:
    """RFC 9000 14.1: an Initial in a datagram under 1200 bytes is discarded.
    py-libp2p registered a pending handshake for it first; a stream of tiny
    datagrams then evicted honest handshakes from the capped table."""
    async with Node(local_config(listen=[QUIC], swim=False, resources=ResourceLimits(max_pending_handshakes=CAP))) as a:
        listener, port = _listener(a)
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            for datagram in _initials(port, 20):
                await sock.sendto(datagram[:100], ("127.0.0.1", port))
        await wait_until(lambda: getattr(listener, DROPPED_SHORT, 0) == 20, what="the short Initials dropped")
        assert not listener._registry._pending
        assert getattr(listener, EVICTED, 0) == 0


async def test_stream_data_drained_while_pending_goes_back_to_the_connection() -> None:
    """The listener's event loop for a pending handshake, as py-libp2p writes
    it, drains every event (here: a stand-in that pops them all); stream
    data among them is put back, in order, for the connection's own loop."""
    from collections import deque
    from types import SimpleNamespace

    from aioquic.quic.events import HandshakeCompleted, StreamDataReceived

    from agentp2p.network.quic.listener import keep_early_stream_data

    first = StreamDataReceived(data=b"/multistream", end_stream=False, stream_id=0)
    second = StreamDataReceived(data=b"/1.0.0\n", end_stream=False, stream_id=0)
    done = HandshakeCompleted(alpn_protocol="libp2p", early_data_accepted=False, session_resumed=False)
    queue = deque([first, done, second])
    quic_conn = SimpleNamespace(_events=queue, next_event=lambda: queue.popleft() if queue else None)
    seen: list[object] = []

    async def library(listener: object, conn: object, addr: object, cid: bytes) -> None:
        while (event := conn.next_event()) is not None:  # type: ignore[attr-defined]
            seen.append(event)

    woken: list[bool] = []
    connection = SimpleNamespace(_signal_activity=lambda: woken.append(True))

    async def find(cid: bytes) -> tuple[object, None, None]:
        return connection, None, None

    listener = SimpleNamespace(_registry=SimpleNamespace(find_by_connection_id=find))
    await keep_early_stream_data(library)(listener, quic_conn, ("127.0.0.1", 1), b"cid")
    assert seen == [done]
    assert list(queue) == [first, second]
    assert woken == [True]


async def test_handshakes_from_one_source_ip_are_rate_limited() -> None:
    """Each Initial that decrypts costs a TLS handshake; 200 of them at once
    from 127.0.0.2 get the per-IP burst (40) and no more, and a peer from
    127.0.0.1 still connects."""
    async with Node(local_config(listen=[QUIC], swim=False)) as a:
        listener, port = _listener(a)
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.2", 0))
            datagrams = _initials(port, 200)
            for i in range(0, 200, 20):  # in batches the kernel's socket buffer holds
                for datagram in datagrams[i : i + 20]:
                    await sock.sendto(datagram, ("127.0.0.1", port))
                await wait_until(lambda: listener._stats["packets_processed"] >= i + 20, what="the batch read")
            # The burst (40) and what refilled meanwhile (20/s) got through; the rest was dropped unread.
            assert getattr(listener, DROPPED_RATE, 0) >= 100
            assert len(listener._registry._pending) <= 64
            async with Node(local_config(listen=[QUIC], swim=False)) as b:
                await b.connect(a.addrs[0])
                assert await b.ping(a.peer_id) > 0
