"""DCUtR between real nodes on 127.0.0.1 (behind real NATs:
tests/reachability/test_holepunch_nat.py).

Loopback has no NAT, so here the addresses are private and the tests turn
``allow_private`` on: a relayed connection is made direct by reversal; a
punch dials from its bound port in its DCUtR role; a peer cannot use
DCUtR over a direct connection, nor crash a node with garbage.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio

from agentp2p.network.framing import length_prefixed
from agentp2p.network.punch import PunchError, PunchPort, direct_connections, punch
from agentp2p.network.relayed import relayed_connections
from agentp2p.node import Node
from agentp2p.protocol.autonat.config import AutoNATConfig
from agentp2p.protocol.holepunch.codec import PROTOCOL
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
        assert direct_connections(a.host, b.peer_id) and direct_connections(b.host, a.peer_id)
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
async def test_private_addresses_are_not_punched_on_the_internet() -> None:
    """Without allow_private (the default), loopback is nobody's public
    address: B neither reverses nor offers itself, and stays relayed."""
    default = HolePunchConfig()
    async with relayed(default, default) as (_r, a, b):
        await a.connect(circuit_of(b))
        await wait_until(lambda: b.stats()["holepunch"].get("failed") == 1, 15, "B gives up")
        assert "reversals_ok" not in b.stats()["holepunch"]
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
async def test_dcutr_over_a_direct_connection_is_refused() -> None:
    async with Node(cfg()) as a, Node(cfg()) as b:
        await a.connect(b.addrs[0])
        with trio.fail_after(10), pytest.raises(Exception):  # the reset comes in negotiation or after
            stream = await a.dialer.open_stream(b.peer_id, [PROTOCOL])
            await stream.read(1)
        await wait_until(lambda: b.stats()["holepunch"].get("refused_not_relayed") == 1, 10, "B refuses")


@pytest.mark.trio
async def test_garbage_on_the_dcutr_stream_costs_the_sender_its_stream_only() -> None:
    async with relayed() as (_r, a, b):
        # A reversal would make it direct at once; stop B from trying.
        b.services["holepunch"]._retry_at[a.peer_id] = float("inf")  # type: ignore[attr-defined]
        await a.connect(circuit_of(b))
        # B (reached through the relay) speaks to A, which answers DCUtR.
        stream = await b.dialer.open_stream(a.peer_id, [PROTOCOL], dial=False)
        await stream.write(length_prefixed(b"\xff\xff\xff"))
        with trio.fail_after(10):
            with pytest.raises(Exception):
                await stream.read(1)
        assert a.stats()["holepunch"]["answer_failed"] == 1
        assert await a.ping(b.peer_id) > 0
