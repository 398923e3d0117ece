"""Connections left closed in py-libp2p's table (agentp2p/network/closing.py).

py-libp2p 0.8.1's ``SwarmConn.close`` marks the connection closed, closes the
muxer, and only then takes it out of the table and tells the notifees. A
close cut short in between leaves it in the table for good: the library then
neither dials the peer nor opens a stream to it ("No valid connections
available"). Each test shows the library's behaviour and ours."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from agentp2p import Node
from agentp2p.network.closing import Closer
from agentp2p.testing import local_config, wait_until

PING = "/ipfs/ping/1.0.0"


@contextlib.asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Node, Node]]:
    """Two connected nodes; their sweeps held off, so each test runs its own."""
    a, b = Node(local_config(swim=False)), Node(local_config(swim=False))
    for n in (a, b):
        n.dialer.closer.sweep_interval = 3600.0
    async with a, b:
        await a.connect(b.addrs[0])
        await wait_until(lambda: b.is_connected(a.peer_id), 10, "b sees the connection")
        yield a, b


async def _close_cut_short(conn: Any) -> None:
    """Start the library's close and cut it at its first checkpoint (as a
    caller's deadline would: the manager's round had one)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        await conn.close()


async def test_a_close_cut_short_locks_the_peer_out_of_the_library_not_out_of_our_dialer() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        events = a.events.subscribe()
        (conn,) = network.get_connections(b.peer_id)
        await _close_cut_short(conn)
        # The library: the closed connection stays in its table, the socket stays
        # open (b still counts it), and no stream can be opened to b any more.
        assert conn in network.get_connections(b.peer_id) and conn.is_closed
        assert not conn.muxed_conn.is_closed and b.is_connected(a.peer_id)
        with pytest.raises(Exception, match="No valid connections available"):
            await network.new_stream(b.peer_id)
        # Ours: not connected, and a stream to b dials b again.
        assert not a.is_connected(b.peer_id) and b.peer_id not in a.peers()
        stream = await a.dialer.open_stream(b.peer_id, [PING], timeout=10)
        await stream.close()
        assert conn not in network.get_connections(b.peer_id) and a.is_connected(b.peer_id)
        assert a.dialer.closer.stats.forgotten == 1
        assert a.stats()["network"]["closing"]["forgotten"] == 1
        # Its services were told the old connection ended, then the new one began.
        first = await events.receive()
        second = await events.receive()
        assert (first.peer_id, first.connected, second.connected) == (b.peer_id, False, True)
        # The forgotten connection's socket was closed: b keeps only the new one.
        await wait_until(lambda: len(b.host.get_network().get_connections(a.peer_id)) == 1, 10,
                         "b drops the old connection")


async def test_the_sweep_forgets_a_connection_left_closed_and_waits_one_sweep_for_a_close_in_progress() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        closer = a.dialer.closer
        events = a.events.subscribe()
        (conn,) = network.get_connections(b.peer_id)
        await _close_cut_short(conn)
        # The first sweep to see it leaves it (a close in progress ends in a fraction of a second) ...
        assert await closer.sweep() == 0
        assert conn in network.get_connections(b.peer_id)
        # ... the next one takes it out: the table, the socket, the notifees.
        assert await closer.sweep() == 1
        assert conn not in network.get_connections(b.peer_id) and closer.stats.forgotten == 1
        ev = await events.receive()
        assert (ev.peer_id, ev.connected) == (b.peer_id, False)
        await wait_until(lambda: not b.is_connected(a.peer_id), 10, "b sees the connection end")
        assert await closer.sweep() == 0


async def test_a_close_that_stalls_or_is_cancelled_still_leaves_the_table() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        (conn,) = network.get_connections(b.peer_id)
        muxed = conn.muxed_conn
        stalled = trio.Event()

        async def stall() -> None:  # a muxer whose GO_AWAY the peer never reads
            stalled.set()
            await trio.sleep_forever()

        muxed.close = stall
        closer = Closer(network, timeout=0.2)
        # The caller's own deadline runs out first: the close still finishes its work.
        with trio.move_on_after(0.05) as scope:
            await closer.close(conn)
        assert stalled.is_set() and scope.cancel_called
        assert conn not in network.get_connections(b.peer_id)
        assert closer.stats.as_dict() == {"closes": 1, "forced": 1, "forgotten": 0}
        assert not a.is_connected(b.peer_id)
        # The socket under the stalled muxer was closed: b sees the connection end.
        await wait_until(lambda: not b.is_connected(a.peer_id), 10, "b sees the connection end")


async def test_a_close_that_finishes_is_not_forced() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        (conn,) = network.get_connections(b.peer_id)
        closer = a.dialer.closer
        await closer.close(conn)
        assert conn not in network.get_connections(b.peer_id)
        assert closer.stats.as_dict() == {"closes": 1, "forced": 0, "forgotten": 0}
        await wait_until(lambda: not b.is_connected(a.peer_id), 10, "b sees the connection end")


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Closer(object(), timeout=0)
    with pytest.raises(ValueError):
        Closer(object(), sweep_interval=-1)
