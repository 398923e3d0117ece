"""network/dialer.py: the one dialer, on real sockets (127.0.0.1).

Each rule in its module doc gets a test: bans, address hints, the library's
negative dial cache, DHT fallback, deadlines, de-duplication.
"""

from __future__ import annotations

import socket

import pytest
import trio
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from agentp2p.errors import DialError
from agentp2p.config import DHTConfig
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


def quiet() -> object:
    # No SWIM (it would dial on its own) and no bootstrap: only our dials.
    return local_config(swim=False)


async def test_concurrent_dials_to_one_peer_share_one_attempt() -> None:
    async with Node(quiet()) as a, Node(quiet()) as b:
        a.dialer.add_addrs(b.peer_id, b.listen_addrs)
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(a.dialer.connect, b.peer_id)
        st = a.dialer.stats
        assert a.is_connected(b.peer_id)
        assert st.dials == 1 and st.successes == 1
        assert st.shared == 7


async def test_dials_are_counted_by_what_asked_for_them() -> None:
    """A stream that needed a connection counts its dial under its protocol,
    ``connect`` under its caller's purpose; shared attempts count once; past
    MAX_PURPOSES names the rest count as "other"."""
    from agentp2p.network.dialer import MAX_PURPOSES, DialerStats
    from agentp2p.protocol.ping import PING_PROTOCOL

    async with Node(quiet()) as a, Node(quiet()) as b, Node(quiet()) as c:
        a.dialer.add_addrs(b.peer_id, b.listen_addrs)
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(lambda: a.dialer.connect(b.peer_id, purpose="bootstrap"))
        stream = await a.dialer.open_stream(c.peer_id, [str(PING_PROTOCOL)], addrs=c.listen_addrs)
        await stream.close()
        stream = await a.dialer.open_stream(b.peer_id, [str(PING_PROTOCOL)])  # connected: no dial
        await stream.close()
        assert a.dialer.stats.by_purpose == {"bootstrap": 1, str(PING_PROTOCOL): 1}
        assert a.dialer.stats.dials == 2
    st = DialerStats()
    for i in range(MAX_PURPOSES + 3):
        st.dialed(f"p{i}")
    assert len(st.by_purpose) == MAX_PURPOSES + 1 and st.by_purpose["other"] == 3


async def test_address_hints_are_used_and_self_and_banned_are_refused() -> None:
    async with Node(quiet()) as a, Node(quiet()) as b:
        with pytest.raises(DialError, match="ourselves"):
            await a.dialer.connect(a.peer_id)
        # No address known: a clear error, no hang.
        with pytest.raises(DialError, match="no known address"):
            await a.dialer.connect(b.peer_id, lookup=False)
        await a.dialer.connect(b.peer_id, b.listen_addrs)  # the hint is enough
        assert a.is_connected(b.peer_id)
        await a.disconnect(b.peer_id)
        await wait_until(lambda: not a.is_connected(b.peer_id))
        for _ in range(10):
            a.offence(b.peer_id, "test", 5.0)
        assert a.is_banned(b.peer_id)
        with pytest.raises(DialError, match="banned"):
            await a.dialer.connect(b.peer_id)
        assert a.dialer.stats.refused_banned == 1


async def test_a_failed_peer_is_dialable_again_at_once() -> None:
    """py-libp2p refuses for 60 s to redial a peer whose addresses all failed;
    a restarted peer must be reachable as soon as it listens again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg_b = local_config(swim=False, listen=[f"/ip4/127.0.0.1/tcp/{port}"])
    async with Node(quiet()) as a:
        b = Node(cfg_b)
        target = Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
        with pytest.raises(DialError):
            await a.dialer.connect(b.peer_id, [target], lookup=False)  # nobody listens yet
        # The library's own dial path now refuses the peer for 60 s:
        network = a.host.get_network()
        assert network._negative_peer_cache.is_blocked(str(b.peer_id))
        async with b:
            with pytest.raises(Exception, match="negative cache"):
                await network.dial_peer(b.peer_id)  # the library's behaviour
            # ours: a dial through the dialer works at once
            await a.dialer.connect(b.peer_id, [target], lookup=False)
            assert a.is_connected(b.peer_id)


async def test_known_addresses_fail_then_the_dht_finds_the_peer() -> None:
    async with Node(quiet()) as hub:
        # a is a DHT client: b's own lookups through the hub cannot meet it and dial it first.
        client = local_config(swim=False, dht=DHTConfig(mode="client"))
        async with Node(local_config(swim=False, bootstrap=[hub.addrs[0]])) as b, Node(client) as a:
            # a knows only the hub (no bootstrap self-lookup that would meet b)
            await a.connect(hub.addrs[0])
            await wait_until(lambda: a.dht.routing_table_size > 0, 20, "a's routing table")
            with trio.fail_after(20):
                while await hub.find_peer(b.peer_id) is None:
                    await trio.sleep(0.1)
            assert not a.is_connected(b.peer_id)
            # a knows b only at a dead address: the dialer falls back to a lookup.
            await a.dialer.connect(b.peer_id, [Multiaddr("/ip4/127.0.0.1/tcp/9")])
            assert a.is_connected(b.peer_id)
            assert a.dialer.stats.dht_lookups == 1 and a.dialer.stats.failures == 1


async def test_every_dial_has_a_deadline() -> None:
    """A peer that accepts TCP and never speaks: the dial fails at the deadline."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    cfg = local_config(swim=False, dial_timeout=1.0)
    try:
        async with Node(cfg) as a:
            from agentp2p.network.identity import Identity

            ghost = Identity.generate().peer_id
            start = trio.current_time()
            with pytest.raises(DialError):
                await a.dialer.connect(ghost, [Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")], lookup=False)
            assert trio.current_time() - start < 5.0
            # a stream open on top of it is bounded too
            with pytest.raises(DialError):
                await a.dialer.open_stream(ghost, ["/x/1"], timeout=0.5, lookup=False)
            info = PeerInfo(ghost, [])
            assert not a.is_connected(info.peer_id)
    finally:
        listener.close()
