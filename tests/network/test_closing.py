"""Connections left closed in py-libp2p's table (agentp2p/network/closing.py).

py-libp2p 0.8.1's ``SwarmConn.close`` marks the connection closed, closes the
muxer, and only then takes it out of the table and tells the notifees. A
close cut short in between leaves it in the table for good: the library then
neither dials the peer nor opens a stream to it ("No valid connections
available"). The tests show the library's behaviour (its own close,
``closing.LIBRARY``) and ours (the wrapped close, the dialer, the sweep)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from agentp2p import Node
from agentp2p.network.closing import LIBRARY, Closer
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


async def _library_close_cut_short(conn: Any) -> None:
    """The library's own close, cut at its first checkpoint (as a caller's
    deadline would: the manager's round had one)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        await LIBRARY["close"](conn)


async def _events(node: Node, channel: trio.MemoryReceiveChannel[Any], count: int) -> list[tuple[Any, bool]]:
    out = []
    with trio.fail_after(10):
        for _ in range(count):
            ev = await channel.receive()
            out.append((ev.peer_id, ev.connected))
    return out


async def test_a_library_close_cut_short_locks_the_peer_out_of_the_library_not_out_of_our_dialer() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        events = a.events.subscribe()
        (conn,) = network.get_connections(b.peer_id)
        await _library_close_cut_short(conn)
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
        assert a.stats()["network"]["closing"] == {"forced": 0, "forgotten": 1}
        # Its services were told the old connection ended, then the new one began.
        assert await _events(a, events, 2) == [(b.peer_id, False), (b.peer_id, True)]
        # The forgotten connection's socket was closed: b keeps only the new one.
        await wait_until(lambda: len(b.host.get_network().get_connections(a.peer_id)) == 1, 10,
                         "b drops the old connection")


async def test_the_sweep_takes_out_a_connection_left_closed() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        closer = a.dialer.closer
        events = a.events.subscribe()
        (conn,) = network.get_connections(b.peer_id)
        await _library_close_cut_short(conn)
        assert await closer.sweep() == 1
        assert conn not in network.get_connections(b.peer_id) and closer.stats.forgotten == 1
        assert await _events(a, events, 1) == [(b.peer_id, False)]
        await wait_until(lambda: not b.is_connected(a.peer_id), 10, "b sees the connection end")
        assert await closer.sweep() == 0


async def test_our_close_stalled_and_cut_short_by_its_caller_still_leaves_the_table_once() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        events = a.events.subscribe()
        (conn,) = network.get_connections(b.peer_id)
        stalled = trio.Event()

        async def stall() -> None:  # a muxer whose GO_AWAY the peer never reads
            stalled.set()
            await trio.sleep_forever()

        conn.muxed_conn.close = stall
        # The caller's deadline runs out inside the library's close: the close is
        # finished by force (the library's part is not cut in the middle by it).
        with trio.move_on_after(0.05):
            await conn.close()
        assert stalled.is_set()
        assert conn not in network.get_connections(b.peer_id) and not a.is_connected(b.peer_id)
        assert a.dialer.closer.stats.as_dict() == {"forced": 1, "forgotten": 0}
        assert await _events(a, events, 1) == [(b.peer_id, False)]
        # The socket under the stalled muxer was closed: b sees the connection end.
        await wait_until(lambda: not b.is_connected(a.peer_id), 10, "b sees the connection end")
        # Told once: a second close, or the sweep, adds nothing.
        await conn.close()
        assert await a.dialer.closer.sweep() == 0
        await a.connect(b.addrs[0])
        assert await _events(a, events, 1) == [(b.peer_id, True)]


async def test_a_stream_asked_for_while_a_close_runs_waits_for_it_and_dials_again() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        events = a.events.subscribe()
        (conn,) = network.get_connections(b.peer_id)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.close)
            await wait_until(lambda: conn.is_closed, 10, "the close began")
            stream = await a.dialer.open_stream(b.peer_id, [PING], timeout=10)
            await stream.close()
        assert conn not in network.get_connections(b.peer_id) and a.is_connected(b.peer_id)
        # The library's close finished it: nothing forced or forgotten, one event each way.
        assert a.dialer.closer.stats.as_dict() == {"forced": 0, "forgotten": 0}
        assert await _events(a, events, 2) == [(b.peer_id, False), (b.peer_id, True)]


async def test_a_close_that_finishes_is_not_forced() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        (conn,) = network.get_connections(b.peer_id)
        await a.disconnect(b.peer_id)
        assert conn not in network.get_connections(b.peer_id)
        assert a.dialer.closer.stats.as_dict() == {"forced": 0, "forgotten": 0}
        await wait_until(lambda: not b.is_connected(a.peer_id), 10, "b sees the connection end")


def test_the_sweep_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Closer(object(), sweep_interval=0)
