"""Inbound streams per (peer, protocol): py-libp2p runs every stream a peer
opens; ours resets those beyond the limit, for every handler on the host
(ours and the library's), and a peer that keeps trying is banned."""

from __future__ import annotations

from typing import Any

import trio

from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo

from agentp2p.network.resources import ResourceLimits
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

from agentp2p.testing import LOOPBACK
from agentp2p.testing import library_host as plain_host

HOLD = "/agentp2p/test-hold/1.0.0"


async def _open_many(dialer: Any, peer: Any, n: int, protocol: str = HOLD) -> list[Any]:
    """Open ``n`` streams; a refused one may fail on our side too (it is reset)."""
    streams = []
    for _ in range(n):
        if not dialer.get_network().get_connections(peer):
            break  # we were banned and disconnected
        try:
            with trio.fail_after(5):
                streams.append(await dialer.new_stream(peer, [TProtocol(protocol)]))
        except Exception:
            pass
    return streams


async def test_library_runs_every_stream_a_peer_opens() -> None:
    running = 0

    async def hold(stream: Any) -> None:
        nonlocal running
        running += 1
        await trio.sleep_forever()

    victim, dialer = plain_host(), plain_host()
    victim.set_stream_handler(TProtocol(HOLD), hold)
    async with victim.run([LOOPBACK]), dialer.run([LOOPBACK]):
        await dialer.connect(PeerInfo(victim.get_id(), victim.get_transport_addrs()))
        await _open_many(dialer, victim.get_id(), 12)
        await wait_until(lambda: running == 12, 10, "all twelve handlers running")


async def test_streams_beyond_the_per_protocol_limit_are_reset_then_the_peer_is_banned() -> None:
    running = 0

    async def hold(stream: Any) -> None:
        nonlocal running
        running += 1
        try:
            while await stream.read(1024):  # holds the stream until the peer or the connection ends it
                pass
        except Exception:
            pass
        finally:
            running -= 1

    limits = ResourceLimits(max_streams_per_peer_protocol=4)
    async with Node(local_config(swim=False, resources=limits)) as victim:
        victim.set_stream_handler(HOLD, hold)
        dialer = plain_host()
        async with dialer.run([LOOPBACK]):
            await dialer.connect(PeerInfo(victim.peer_id, victim.listen_addrs))
            await _open_many(dialer, victim.peer_id, 12)
            await wait_until(lambda: victim.resources.hits["streams_per_peer_protocol"] == 8, 10, "8 refused")
            assert running == 4
            # every handler is limited, whoever registered it (the DHT's too)
            await _open_many(dialer, victim.peer_id, 6, "/agentp2p/kad/1.0.0")
            await wait_until(lambda: victim.resources.hits["streams_per_peer_protocol"] == 10, 10, "DHT streams refused")
            # a peer that persists crosses the penalty threshold and is cut off
            await _open_many(dialer, victim.peer_id, 30)
            await wait_until(lambda: victim.is_banned(dialer.get_id()), 10, "the peer to be banned")
            await wait_until(lambda: not victim.is_connected(dialer.get_id()), 10, "the banned peer dropped")
        # every slot came back when the streams ended
        await wait_until(lambda: not victim.resources._streams_per_peer_protocol, 10, "stream slots released")
        assert running == 0


async def test_streams_opened_faster_than_the_rate_are_reset() -> None:
    """Short streams that each finish at once never hit the concurrency limit;
    the per-(peer, protocol) open rate stops a peer that churns them."""
    handled = 0

    async def quick(stream: Any) -> None:
        nonlocal handled
        handled += 1
        await stream.close()

    limits = ResourceLimits(stream_opens_per_second=1.0, stream_open_burst=5)
    config = local_config(swim=False, resources=limits)
    config.penalties.threshold = 1000  # watch the limit, not the ban
    async with Node(config) as victim:
        victim.set_stream_handler(HOLD, quick)
        dialer = plain_host()
        async with dialer.run([LOOPBACK]):
            await dialer.connect(PeerInfo(victim.peer_id, victim.listen_addrs))
            started = trio.current_time()
            await _open_many(dialer, victim.peer_id, 30)
            elapsed = trio.current_time() - started
            refused = lambda: victim.resources.hits["stream_opens_per_second"]  # noqa: E731
            await wait_until(lambda: handled + refused() >= 30, 10, "every stream handled or refused")
            # the burst, plus one token per second spent opening
            assert 5 <= handled <= 5 + int(elapsed) + 1, (handled, elapsed)
            assert victim.penalties.points(dialer.get_id()) >= 20
