"""Connections left closed in py-libp2p's table (agentp2p/network/closing.py).

py-libp2p 0.8.1's ``SwarmConn.close`` marks the connection closed, closes the
muxer, and only then takes it out of the table and tells the notifees. A
close cut short in between leaves it in the table for good: the library then
neither dials the peer nor opens a stream to it ("No valid connections
available"), and nobody hears the connection go. The tests show the
library's behaviour and the sweep that ends it."""

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
    """Two connected nodes; their own sweeps held off, so each test runs its
    sweeps (with no grace: two sweeps in a row are enough)."""
    a, b = Node(local_config(swim=False)), Node(local_config(swim=False))
    for n in (a, b):
        n.closer.sweep_interval = 3600.0
        n.closer.grace = 0.0
    async with a, b:
        await a.connect(b.addrs[0])
        await wait_until(lambda: b.is_connected(a.peer_id), 10, "b sees the connection")
        yield a, b


async def _close_cut_short(conn: Any) -> None:
    """The library's close, cut at its first checkpoint (as a caller's deadline would)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        await conn.close()


async def test_a_close_cut_short_locks_the_peer_out_until_the_sweep_takes_it_out() -> None:
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
            await a.dialer.open_stream(b.peer_id, [PING], timeout=10)
        # The first sweep to find it closed leaves it (a close that runs ends in a
        # fraction of a second) ...
        assert await a.closer.sweep() == 0
        assert conn in network.get_connections(b.peer_id)
        # ... the next takes it out: the table, the socket, the services.
        assert await a.closer.sweep() == 1
        assert conn not in network.get_connections(b.peer_id)
        assert a.stats()["network"]["closing"] == {"forgotten": 1}
        with trio.fail_after(10):
            ev = await events.receive()
        assert (ev.peer_id, ev.connected) == (b.peer_id, False)
        await wait_until(lambda: not b.is_connected(a.peer_id), 10, "b sees the connection end")
        # b can be reached again: a stream dials it anew.
        stream = await a.dialer.open_stream(b.peer_id, [PING], timeout=10)
        await stream.close()
        assert await a.closer.sweep() == 0 and a.closer.stats.forgotten == 1


async def test_a_close_that_runs_is_left_to_finish_and_told_once() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        events = a.events.subscribe()
        (conn,) = network.get_connections(b.peer_id)
        a.closer.grace = 3600.0  # as the default 10 s is: longer than a close that runs takes
        muxed, release = conn.muxed_conn, trio.Event()
        real_close = muxed.close

        async def held_close() -> None:  # the close stays under way until released
            await release.wait()
            await real_close()

        muxed.close = held_close
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.close)
            await wait_until(lambda: conn.is_closed, 10, "the close began")
            # Under way: seen closed by two sweeps, left alone.
            assert await a.closer.sweep() == 0 and await a.closer.sweep() == 0
            assert conn in network.get_connections(b.peer_id)
            release.set()
        assert conn not in network.get_connections(b.peer_id)
        assert await a.closer.sweep() == 0 and a.closer.stats.forgotten == 0
        with trio.fail_after(10):
            ev = await events.receive()
        assert (ev.peer_id, ev.connected) == (b.peer_id, False)
        # One "disconnected" per connection, however many times the notifees are told.
        await network.notify_disconnected(conn)
        await a.connect(b.addrs[0])
        with trio.fail_after(10):
            ev = await events.receive()
        assert (ev.peer_id, ev.connected) == (b.peer_id, True)


async def test_a_connection_closed_for_less_than_the_grace_is_left() -> None:
    async with _pair() as (a, b):
        network = a.host.get_network()
        (conn,) = network.get_connections(b.peer_id)
        await _close_cut_short(conn)
        a.closer.grace = 3600.0  # a slow close (QUIC's takes up to 5 s) is not raced
        assert await a.closer.sweep() == 0 and await a.closer.sweep() == 0
        assert conn in network.get_connections(b.peer_id)
        a.closer.grace = 0.0
        assert await a.closer.sweep() == 1 and conn not in network.get_connections(b.peer_id)


def test_the_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        Closer(object(), sweep_interval=0)
    with pytest.raises(ValueError):
        Closer(object(), grace=-1)


async def test_a_sweep_that_fails_is_logged_and_the_next_runs(caplog: pytest.LogCaptureFixture) -> None:
    """The sweep shares the node's nursery: an error in one must not end the node."""

    class Broken:
        @property
        def connections(self) -> dict[Any, Any]:
            raise RuntimeError("the table cannot be read")

    closer = Closer(Broken(), sweep_interval=0.01)
    with trio.fail_after(30):  # longer than wait_until's own: its failure is the one seen
        async with trio.open_nursery() as nursery:
            nursery.start_soon(closer.run)
            await wait_until(lambda: sum("cannot be read" in r.getMessage() for r in caplog.records) >= 2, 10,
                             "two failed sweeps logged")
            nursery.cancel_scope.cancel()
