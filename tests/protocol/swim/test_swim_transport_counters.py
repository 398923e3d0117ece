"""What the SWIM transport's counters tell apart, over real sockets.

A lost frame has several causes, and the devnet's merge windows are read
through these counters (benchmarks/devnet_scale.py): a stream open that
needed a new connection or not, an open that ran out of time or was
refused, a write that ran out of time or found its stream broken.
"""

from __future__ import annotations

from functools import partial

import trio
from multiaddr import Multiaddr

from agentp2p.node import Node
from agentp2p.protocol.swim.wire import PROTOCOL_ID
from agentp2p.testing import local_config, wait_until
from tests.protocol.swim.swimreal import running_transport

async def _silent(_stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


GHOST = b"\x00\x24\x08\x01\x12\x20" + bytes(32)  # a well-formed peer ID nobody runs


async def test_an_open_refused_at_once_is_a_failure_not_a_timeout() -> None:
    async with Node(local_config(swim=False)) as a:
        async with running_transport(a, dial_timeout=5.0) as transport:
            assert transport.send(GHOST, b"ping", (b"\x04\x7f\x00\x00\x01\x06\x00\x01",), kind="Ping")  # 127.0.0.1:1
            await wait_until(lambda: transport.stats.dial_failures == 1, what="the dial to fail")
            st = transport.stats
            assert (st.dials, st.dials_unconnected, st.dial_timeouts, st.dropped_dial) == (1, 1, 0, 1)
            assert transport.dials_for == {"Ping": 1}  # what asked for the new connection


async def test_an_open_that_hangs_is_counted_as_a_timeout() -> None:
    async with Node(local_config(swim=False)) as a, trio.open_nursery() as nursery:
        # A listener that accepts and then says nothing: the handshake hangs.
        listeners = await nursery.start(partial(trio.serve_tcp, _silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        addr = Multiaddr(f"/ip4/127.0.0.1/tcp/{port}").to_bytes()
        async with running_transport(a, dial_timeout=0.5) as transport:
            assert transport.prepare(GHOST, (addr,))
            await wait_until(lambda: transport.stats.dial_failures == 1, what="the dial to time out")
            st = transport.stats
            assert (st.dials, st.dials_unconnected, st.dial_timeouts, st.dropped_dial) == (1, 1, 1, 0)
            assert transport.dials_for == {"ConnectAhead": 1}
        nursery.cancel_scope.cancel()


async def test_a_write_the_peer_never_reads_is_counted_as_a_timeout_and_an_open_stream_needs_no_connection() -> None:
    accepted: list[object] = []

    async def never_read(stream: object) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        b.set_stream_handler(PROTOCOL_ID, never_read)
        await a.connect(b.addrs[0])
        async with running_transport(a, write_timeout=0.5) as transport:
            peer = b.peer_id.to_bytes()
            # Yamux's window (256 KiB) fills and the writes wait for a
            # window update that never comes.
            for _ in range(8):
                assert transport.send(peer, bytes(60_000), kind="PushPull")
            await wait_until(lambda: transport.stats.dropped_write >= 1, what="a write to time out")
            st = transport.stats
            assert st.write_timeouts == st.dropped_write >= 1
            # The timed-out stream was reset, so the next frame opens another
            # (the connection stays): a dial that needs no new connection.
            assert st.dials >= 1 and (st.dials_unconnected, st.dial_failures) == (0, 0) and transport.dials_for == {}
            assert accepted
