"""DCUtR between real nodes on 127.0.0.1 (behind real NATs:
tests/reachability/test_holepunch_nat.py).

Loopback has no NAT, so here the addresses are private and the tests turn
``allow_private`` on: a relayed connection is made direct by reversal; a
punch dials from its bound port in its DCUtR role; a peer cannot use
DCUtR over a direct connection, nor crash a node with garbage.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import trio
from multiaddr import Multiaddr

from agentp2p.network.framing import length_prefixed, read_message
from agentp2p.network.punch import PunchError, PunchPort, direct_connections, punch
from agentp2p.network.relayed import relayed_connections
from agentp2p.node import Node
from agentp2p.protocol.autonat.config import AutoNATConfig
from agentp2p.protocol.holepunch.codec import CONNECT, PROTOCOL, connect, decode
from agentp2p.protocol.holepunch.config import HolePunchConfig
from agentp2p.protocol.relay.config import RelayConfig
from agentp2p.testing import local_config, wait_until

QUIET = AutoNATConfig(client=False)
LAN = HolePunchConfig(allow_private=True, grace=0.2)


def cfg(holepunch: HolePunchConfig = LAN, **relay: object) -> object:
    return local_config(swim=False, autonat=QUIET, relay=RelayConfig(**relay), holepunch=holepunch)  # type: ignore[arg-type]


def circuit_of(node: Node) -> str:
    return node.stats()["relay"]["circuit_addrs"][0] + f"/p2p/{node.peer_id}"


@contextlib.asynccontextmanager
async def relayed(a_cfg: HolePunchConfig = LAN, b_cfg: HolePunchConfig = LAN) -> AsyncIterator[tuple[Node, Node, Node]]:
    """A relay R, a node B with a reservation on R, a node A that knows B only by its circuit."""
    async with Node(cfg(service="on", holepunch=HolePunchConfig(enabled=False))) as r:
        async with Node(cfg(b_cfg, relays=[r.addrs[0]])) as b:
            await wait_until(lambda: bool(b.stats()["relay"]["circuit_addrs"]), 15, "B's reservation")
            async with Node(cfg(a_cfg)) as a:
                yield r, a, b


@pytest.mark.trio
async def test_a_relayed_connection_becomes_direct_by_reversal() -> None:
    async with relayed() as (_r, a, b):
        await a.connect(circuit_of(b))
        # B was reached through the relay; A has (LAN) addresses B may dial.
        await wait_until(lambda: b.stats()["holepunch"].get("direct_by_reversal") == 1, 15, "B's reversal")
        assert direct_connections(b.host, a.peer_id)
        # B counts its reversal once its own side of the upgrade is done; A,
        # the responder, may still be finishing its side and registering it.
        await wait_until(lambda: bool(direct_connections(a.host, b.peer_id)), 10, "A's side of the reversal")
        # The relayed connection is closed after the grace period, both ends.
        await wait_until(lambda: not relayed_connections(a.host, b.peer_id)
                         and not relayed_connections(b.host, a.peer_id), 15, "the relayed connection closed")
        assert await a.ping(b.peer_id) > 0
        assert b.stats()["holepunch"]["direct_after_ms"]["count"] == 1


@pytest.mark.trio
async def test_without_hole_punching_the_connection_stays_relayed() -> None:
    off = HolePunchConfig(enabled=False)
    async with relayed(off, off) as (_r, a, b):
        await a.connect(circuit_of(b))
        assert await a.ping(b.peer_id) > 0
        assert relayed_connections(a.host, b.peer_id) and not direct_connections(a.host, b.peer_id)
        assert "holepunch" not in b.stats()


@pytest.mark.trio
async def test_loopback_is_neither_dialed_nor_offered_without_allow_private() -> None:
    """Without allow_private (the default), loopback is nobody's public
    address: B does not reverse to A's, does not offer its own, and stays
    relayed. (That a peer's private CONNECT addresses are dropped is
    test_only_public_tcp_addresses_are_punched_and_only_a_few.)"""
    default = HolePunchConfig()
    async with relayed(default, default) as (_r, a, b):
        await a.connect(circuit_of(b))
        await wait_until(lambda: b.stats()["holepunch"].get("failed") == 1, 15, "B gives up")
        hp = b.stats()["holepunch"]
        assert "reversals_ok" not in hp and "reversals_failed" not in hp
        assert "no public address" in hp["last_failure"] and hp["observed_ips"] == []
        assert relayed_connections(b.host, a.peer_id) and not direct_connections(b.host, a.peer_id)
        assert await a.ping(b.peer_id) > 0


@pytest.mark.trio
async def test_a_punch_dials_from_its_bound_port_in_the_role_it_is_given() -> None:
    """The socket side of a punch. Loopback has no NAT to hold a SYN until
    the other side's crosses it (a closed port answers with a RST at once),
    so the simultaneous open itself is tested in the NAT lab; here A punches
    to B's listener: the connection leaves from A's bound port, A runs Noise
    as the client, B's listener as the server. As the server, a punch to a
    listener (a server too) cannot finish the handshake, and says so."""
    async with Node(cfg()) as a, Node(cfg()) as b:
        b_port = int(b.addrs[0].split("/tcp/")[1].split("/")[0])
        port = PunchPort()
        try:
            await punch(a.host, b.peer_id, port, [("127.0.0.1", b_port)], as_client=True, timeout=10)
            # B sets its side up as it sends its acceptance, which A waited for.
            await wait_until(lambda: bool(direct_connections(b.host, a.peer_id)), 10, "B's side of the punch")
            (conn,) = direct_connections(b.host, a.peer_id)
            assert conn.muxed_conn.secured_conn.get_remote_address() == ("127.0.0.1", port.port)
            assert await b.ping(a.peer_id) > 0
        finally:
            port.close()
    async with Node(cfg()) as a, Node(cfg()) as b:
        port = PunchPort()
        try:
            with pytest.raises(PunchError):
                await punch(a.host, b.peer_id, port, [("127.0.0.1", int(b.addrs[0].split("/tcp/")[1].split("/")[0]))],
                            as_client=False, timeout=2)
        finally:
            port.close()
        assert not direct_connections(a.host, b.peer_id)


@pytest.mark.trio
async def test_a_punch_the_peer_refuses_after_the_handshake_fails() -> None:
    """Our muxer proposal rides without waiting for the peer's answer
    (network/multistream.py): a punch counts only once the peer accepts it.
    B denies A, so B's gate closes A's connection after Noise."""
    async with Node(cfg()) as a, Node(cfg()) as b:
        await b.deny(a.peer_id)
        b_port = int(b.addrs[0].split("/tcp/")[1].split("/")[0])
        port = PunchPort()
        try:
            with pytest.raises(PunchError, match="refused after the handshake"):
                await punch(a.host, b.peer_id, port, [("127.0.0.1", b_port)], as_client=True, timeout=10)
        finally:
            port.close()


@pytest.mark.trio
async def test_dcutr_over_a_direct_connection_is_refused() -> None:
    async with Node(cfg()) as a, Node(cfg()) as b:
        await a.connect(b.addrs[0])
        with trio.fail_after(10), pytest.raises(Exception):  # the reset comes in negotiation or after
            stream = await a.dialer.open_stream(b.peer_id, [PROTOCOL])
            await stream.read(1)
        await wait_until(lambda: b.stats()["holepunch"].get("refused_not_relayed") == 1, 10, "B refuses")


@pytest.mark.trio
async def test_garbage_on_the_dcutr_stream_costs_the_sender_its_stream_only() -> None:
    # B does not start DCUtR itself (a reversal would make it direct at once).
    async with relayed(LAN, HolePunchConfig(enabled=False)) as (_r, a, b):
        await a.connect(circuit_of(b))
        # B (reached through the relay) speaks to A, which answers DCUtR.
        stream = await b.dialer.open_stream(a.peer_id, [PROTOCOL], dial=False)
        await stream.write(length_prefixed(b"\xff\xff\xff"))
        with trio.fail_after(10):
            with pytest.raises(Exception):
                await stream.read(1)
        assert a.stats()["holepunch"]["answer_failed"] == 1
        assert await a.ping(b.peer_id) > 0


async def _round(b: Node, a: Node, *, sync_too: bool = False) -> tuple[object, bytes]:
    """B opens a DCUtR round to A by hand: CONNECT out, A's CONNECT back."""
    stream = await b.dialer.open_stream(a.peer_id, [PROTOCOL], dial=False)
    await stream.write(length_prefixed(connect([Multiaddr("/ip4/127.0.0.1/tcp/9")])))
    with trio.fail_after(10):
        answer = await read_message(stream, 4096)
    return stream, answer


@pytest.mark.trio
async def test_a_peer_gets_at_most_attempts_rounds_and_a_new_round_replaces_the_last() -> None:
    """As A we punch where B says; B may not have us do so at will: at most
    ``attempts`` rounds per ``retry_after``. And a round B opens while our
    previous one still waits for its SYNC replaces it (B gave up on it)."""
    off = HolePunchConfig(enabled=False)
    a_cfg = HolePunchConfig(allow_private=True, attempts=2, retry_after=600)
    async with relayed(a_cfg, off) as (_r, a, b):
        await a.connect(circuit_of(b))
        first, answer = await _round(b, a)
        assert decode(answer).type == CONNECT and list(decode(answer).ObsAddrs)
        second, _ = await _round(b, a)  # the first round is cancelled ...
        with trio.fail_after(10), pytest.raises(Exception):
            await first.read(1)  # ... and its stream reset
        stats = a.stats()["holepunch"]
        assert stats["answered"] == 2 and stats["in_progress"] == 1
        with trio.fail_after(10), pytest.raises(Exception):  # a third round: refused
            await _round(b, a)
        await wait_until(lambda: a.stats()["holepunch"].get("refused_recent") == 1, 10, "A refuses")
        await second.close()
        await wait_until(lambda: a.stats()["holepunch"]["in_progress"] == 0, 10, "A's round ends")
        assert await a.ping(b.peer_id) > 0


@pytest.mark.trio
async def test_a_refused_address_is_retried_twice_then_given_up() -> None:
    """A peer names the addresses we dial: a port that refuses gets three
    connects in all, not one every few milliseconds until the deadline."""

    class Counting(PunchPort):
        taken = 0

        def take(self) -> object:
            Counting.taken += 1
            return super().take()

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    async with Node(cfg()) as a:
        port = Counting()
        try:
            with trio.fail_after(10), pytest.raises(PunchError, match="refused"):
                await punch(a.host, a.peer_id, port, [("127.0.0.1", dead)], as_client=True, timeout=10)
        finally:
            port.close()
    assert Counting.taken == 3


def test_punch_addresses_follow_the_socket_family() -> None:
    from agentp2p.protocol.holepunch.service import HolePunchService

    raw = [Multiaddr("/ip4/203.0.113.9/tcp/4001").to_bytes(), Multiaddr("/ip6/2001:db8::9/tcp/4001").to_bytes()]
    svc = HolePunchService()
    v4 = PunchPort()
    try:
        assert svc._addrs(raw, v4) == [("203.0.113.9", 4001)]
    finally:
        v4.close()
    assert len(svc._addrs(raw)) == 2


@pytest.mark.trio
async def test_a_round_with_no_address_of_our_family_ends_before_any_dial() -> None:
    """B offers only IPv6 while our punch socket is IPv4 (our observed IP is):
    the round ends right after our CONNECT, before B's SYNC and any SYN."""
    off = HolePunchConfig(enabled=False)
    async with relayed(LAN, off) as (_r, a, b):
        await a.connect(circuit_of(b))
        stream = await b.dialer.open_stream(a.peer_id, [PROTOCOL], dial=False)
        await stream.write(length_prefixed(connect([Multiaddr("/ip6/::1/tcp/9")])))
        with trio.fail_after(10):
            assert decode(await read_message(stream, 4096)).type == CONNECT
            with pytest.raises(Exception):  # then the reset, without waiting for our SYNC
                await stream.read(1)
        stats = a.stats()["holepunch"]
        assert stats["answer_failed"] == 1 and "punches_failed" not in stats and "punches_ok" not in stats
