"""Packets an attacker can send a QUIC listener for free (found by an outside
attack on a daemon): random connection IDs from a connected peer's address,
and Initials aioquic cannot decrypt. py-libp2p's behaviour beside ours."""

from __future__ import annotations

import os

import pytest
import trio
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from libp2p.transport.quic.connection_id_registry import ConnectionIDRegistry
from libp2p.transport.quic.listener import QUICListener

from agentp2p.network import quic
from agentp2p.network.quic.listener import DROPPED_UNDECRYPTABLE
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
N = 50


def _listener(node: Node) -> tuple[QUICListener, tuple[str, int]]:
    listener = next(x for x in node.host.get_network().listeners.values() if isinstance(x, QUICListener))
    return listener, ("127.0.0.1", int(node.addrs[0].split("/udp/")[1].split("/")[0]))


@pytest.mark.parametrize("ours", [False, True], ids=["library", "ours"])
async def test_random_connection_ids_from_a_peers_address(ours: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short-header packets with random connection IDs, sent from a connected
    peer's own socket: the library registers each ID for that connection
    (no cap, no expiry); ours registers none (aioquic drops them)."""
    async with Node(local_config(listen=[QUIC], swim=False)) as a, Node(local_config(listen=[QUIC], swim=False)) as b:
        if not ours:
            monkeypatch.setattr(
                ConnectionIDRegistry, "register_new_connection_id_for_existing_conn", quic.LIBRARY["register_connection_id"]
            )
        listener, addr = _listener(a)
        await b.connect(a.addrs[0])
        (conn,) = b.host.get_network().get_connections(a.peer_id)
        before = len(listener._registry._connections)  # the IDs issued so far
        for _ in range(N):
            await conn.muxed_conn._socket.sendto(bytes([0x40]) + os.urandom(8) + os.urandom(40), addr)
        assert await b.ping(a.peer_id) > 0  # and the connection still works
        if ours:
            await wait_until(lambda: listener._stats["fallback_routing_used"] >= N, what="the packets routed")
            # Only IDs the connection itself issued (aioquic keeps up to 8).
            for cid, server_conn in listener._registry._connections.items():
                assert cid in {issued.cid for issued in server_conn._quic._host_cids}
        else:
            await wait_until(lambda: len(listener._registry._connections) >= before + N, what="every ID registered")


async def test_undecryptable_initials_make_no_state() -> None:
    async with Node(local_config(listen=[QUIC], swim=False)) as a:
        listener, addr = _listener(a)
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            for _ in range(20):
                client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["libp2p"]))
                client.connect(addr, now=0.0)
                datagram = bytearray(client.datagrams_to_send(now=0.0)[0][0])
                datagram[100:200] = os.urandom(100)  # the protected payload: no longer decrypts
                await sock.sendto(bytes(datagram), addr)
        await wait_until(lambda: getattr(listener, DROPPED_UNDECRYPTABLE, 0) == 20, what="the Initials dropped")
        assert not listener._registry._pending and not listener._registry._initial_connection_ids


@pytest.mark.parametrize("ours", [False, True], ids=["library", "ours"])
async def test_a_close_cut_short_by_its_caller_still_leaves_the_swarm(ours: bool) -> None:
    """The caller's deadline lands inside close() (here: at once). The
    library's close has marked the connection closed and not yet told the
    swarm: it stays in the swarm for good (later closes return at once).
    Ours finishes the close shielded, under its own bound."""
    async with Node(local_config(listen=[QUIC], swim=False)) as a, Node(local_config(listen=[QUIC], swim=False)) as b:
        await b.connect(a.addrs[0])
        assert await b.ping(a.peer_id) > 0
        (conn,) = b.host.get_network().get_connections(a.peer_id)
        close = conn.muxed_conn.close if ours else (lambda: quic.LIBRARY["close"](conn.muxed_conn))
        with trio.CancelScope() as scope:
            scope.cancel()
            await close()
        await close()  # a second close changes nothing
        if ours:
            await wait_until(lambda: not b.host.get_network().get_connections(a.peer_id), what="out of the swarm")
        else:
            assert conn.muxed_conn.is_closed
            assert b.host.get_network().get_connections(a.peer_id) == [conn]


@pytest.mark.parametrize("ours", [False, True], ids=["library", "ours"])
async def test_retired_connection_ids_are_forgotten(ours: bool) -> None:
    """A peer that retires our connection IDs in a loop (aioquic issues a new
    one each time) grew the listener's table and the connection's retired
    set by one entry per ID with the library; ours forgets each."""
    from aioquic.quic.events import ConnectionIdRetired

    async with Node(local_config(listen=[QUIC], swim=False)) as a, Node(local_config(listen=[QUIC], swim=False)) as b:
        listener, _ = _listener(a)
        await b.connect(a.addrs[0])
        registry = listener._registry
        # The client's connect returns on its own handshake; the listener
        # moves the connection from pending to established on the client's
        # Finished, a moment later (a CI run under load read it empty).
        await wait_until(lambda: registry._connections, what="the connection established at the listener")
        server_conn = next(iter(registry._connections.values()))
        await wait_until(lambda: sum(c is server_conn for c in registry._connections.values()) >= 2, what="IDs issued")
        cid = next(c for c, conn in registry._connections.items() if conn is server_conn and c != server_conn._current_connection_id)
        handle = server_conn._handle_connection_id_retired if ours else (
            lambda event: quic.LIBRARY["connection_id_retired"](server_conn, event)
        )
        await handle(ConnectionIdRetired(connection_id=cid))
        assert (cid in registry._connections) is not ours
        assert (cid in server_conn._retired_connection_ids) is not ours
        assert await b.ping(a.peer_id) > 0
        if ours:  # the ID new ones are registered beside moves to one still registered
            first = server_conn._listener_connection_id
            await handle(ConnectionIdRetired(connection_id=first))
            assert server_conn._listener_connection_id in registry._connections
            assert await b.ping(a.peer_id) > 0


@pytest.mark.parametrize("ours", [False, True], ids=["library", "ours"])
async def test_connections_the_peer_closes_leave_the_listener(ours: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection the peer closes ends in a handler that cancels its own
    task before telling the listener: with the library, each stayed in the
    listener's tables (~107 KB); ours finishes it."""
    from libp2p.transport.quic.connection import QUICConnection

    quic.install()  # LIBRARY holds the library's handler once installed
    if not ours:
        monkeypatch.setattr(QUICConnection, "_handle_connection_terminated", quic.LIBRARY["connection_terminated"])
    async with Node(local_config(listen=[QUIC], swim=False)) as a:
        listener, _ = _listener(a)
        for _ in range(4):
            async with Node(local_config(listen=[QUIC], swim=False)) as b:
                await b.connect(a.addrs[0])
                assert await b.ping(a.peer_id) > 0
            await wait_until(lambda: not a.is_connected(b.peer_id), what="a sees b gone")
        if ours:
            await wait_until(lambda: not listener._registry._connections and not listener._conn_by_quic_id,
                             what="the listener forgets them")
        else:
            assert len(set(listener._registry._connections.values())) == 4
