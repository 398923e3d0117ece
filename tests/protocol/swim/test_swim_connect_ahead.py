"""ConnectAhead over real sockets: the SWIM transport opens the stream a probe will use.

After the connection manager trims a connection, a probe to that member
would pay a dial inside the probe timeout. The core names its next target
a period early; ``SwimTransport.prepare`` dials it and opens the stream
without writing anything, and the probe then goes out on that stream.
"""

from __future__ import annotations

from multiaddr import Multiaddr

from agentp2p.node import Node
from agentp2p.protocol.swim.wire import PROTOCOL_ID
from agentp2p.testing import local_config, wait_until
from tests.protocol.swim.swimreal import running_transport, swim_network


async def test_prepare_dials_and_opens_the_stream_without_writing_then_the_frame_reuses_it() -> None:
    inbound: list[object] = []
    received = bytearray()

    async def serve(stream: object) -> None:
        inbound.append(stream)
        while True:
            data = await stream.read(65536)  # type: ignore[attr-defined]
            if not data:
                return
            received.extend(data)

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        b.set_stream_handler(PROTOCOL_ID, serve)
        async with running_transport(a) as transport:
            assert not a.is_connected(b.peer_id)
            addrs = tuple(Multiaddr(x.split("/p2p/")[0]).to_bytes() for x in b.addrs)

            assert transport.prepare(b.peer_id.to_bytes(), addrs)
            await wait_until(lambda: transport.open_streams() == 1 and inbound, what="the prepared stream")
            assert a.is_connected(b.peer_id)
            st = transport.stats
            assert (st.prepared, st.dials, st.frames_out, st.dropped_dial) == (1, 1, 0, 0)
            assert transport.prepare(b.peer_id.to_bytes(), addrs)  # a stream is open: nothing to do
            assert st.prepared == 1

            assert transport.send(b.peer_id.to_bytes(), b"probe", addrs)
            await wait_until(lambda: bytes(received).endswith(b"probe"), what="the frame on the prepared stream")
            assert (st.dials, st.frames_out, len(inbound)) == (1, 1, 1)  # no second stream, no second dial


async def test_prepare_to_an_unreachable_peer_loses_nothing_and_counts_no_dropped_frame() -> None:
    async with Node(local_config(swim=False)) as a:
        async with running_transport(a, dial_timeout=2.0, write_timeout=2.0) as transport:
            ghost = b"\x00\x24\x08\x01\x12\x20" + bytes(32)  # a well-formed peer ID nobody runs
            assert transport.prepare(ghost, (b"\x04\x7f\x00\x00\x01\x06\x00\x01",))  # 127.0.0.1:1
            await wait_until(lambda: transport.stats.dial_failures == 1, what="the dial to fail")
            assert transport.stats.dropped_dial == 0  # nothing was waiting to be sent


async def test_the_service_hands_each_connect_ahead_to_the_transport() -> None:
    """The wiring: core ConnectAhead -> SwimService -> SwimTransport.prepare,
    for every member in turn (the round-robin), with its address hints. (In
    a cluster this small and fast the node's own probes keep every stream
    open, so prepare rarely has to dial: the test above covers the dial.)"""
    async with swim_network(4) as members:
        a, others = members[0], members[1:]
        transport = a.swim._transport
        assert transport is not None
        hinted: dict[bytes, tuple[bytes, ...]] = {}
        real = transport.prepare

        def spy(peer: bytes, addrs: tuple[bytes, ...] = ()) -> bool:
            hinted[peer] = tuple(addrs)
            return real(peer, addrs)

        transport.prepare = spy  # type: ignore[method-assign]
        want = {m.peer_id.to_bytes() for m in others}
        await wait_until(lambda: want <= set(hinted), timeout=20, what="a hint for every member")
        assert all(hinted[p] for p in want)  # with addresses to dial
