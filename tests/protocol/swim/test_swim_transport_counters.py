"""What the SWIM transport's counters tell apart, and its write bound (over real sockets but the last).

A lost frame has several causes, and the devnet's merge windows are read
through these counters (benchmarks/devnet_scale.py): a stream open that
needed a new connection or not, an open that ran out of time or was
refused, a write that ran out of time or found its stream broken.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.errors import DialError, DialTimeout
from agentp2p.network.framing import length_prefixed
from agentp2p.node import Node
from agentp2p.protocol.swim import SwimConfig
from agentp2p.protocol.swim.service import SwimService
from agentp2p.protocol.swim.transport import MAX_KINDS, SwimTransport
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
            # Why, with the peer's ID and the port taken out (equal causes count together).
            [(reason, n)] = transport.failed_opens.items()
            assert n == 1 and reason.startswith("unconnected: Ping: DialError: dial P failed"), reason
            assert "12D3Koo" not in reason and "127.0.0.1" not in reason, reason


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
            [(reason, n)] = transport.failed_opens.items()
            assert n == 1 and reason.startswith("unconnected: ConnectAhead: DialTimeout: ") and "timed out after Ns" in reason, reason
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
            st = transport.stats
            # The timed-out stream is reset, so the next frame opens another
            # (the connection stays): a stream open that needs no new connection.
            await wait_until(lambda: st.dropped_write >= 1 and st.dials >= 2, what="a write to time out, a new stream")
            assert st.write_timeouts == st.dropped_write >= 1
            assert (st.dials_unconnected, st.dial_failures) == (0, 0) and transport.dials_for == {}
            assert accepted


@pytest.mark.parametrize("bound", ["service default", "one period (before)"])
async def test_a_write_held_up_longer_than_a_period_keeps_its_stream_with_the_services_default(bound: str) -> None:
    """The service's write bound is for a stuck stream, not a late frame. A
    peer that reads nothing for 1.5 s (a starved process), with 360 kB
    queued for it (past Yamux's 256 KiB window, so our writes wait for it):
    with the default, every frame arrives on the one stream; with one
    period, as before, the held-up write times out, its stream is reset and
    the next frame opens another (what a starved devnet paid 895 times in
    one merge)."""
    received = bytearray()
    streams = 0
    release = trio.Event()  # before: the reader waits until our write has timed out

    async def slow_reader(stream: object) -> None:
        nonlocal streams
        streams += 1
        if bound == "service default":
            await trio.sleep(1.5)  # the peer's stall, over a period (behaviour under test, not a synchronisation)
        else:
            await release.wait()
        while True:
            try:
                data = await stream.read(65536)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - reset by the writer
                return
            if not data:
                return
            received.extend(data)

    default = SwimService()._write_timeout
    assert default >= 10 * SwimConfig().probe_interval
    write_timeout = default if bound == "service default" else SwimConfig().probe_interval
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        b.set_stream_handler(PROTOCOL_ID, slow_reader)
        await a.connect(b.addrs[0])
        async with running_transport(a, write_timeout=write_timeout) as transport:
            peer = b.peer_id.to_bytes()
            frames = [bytes([i + 1]) * 60_000 for i in range(6)]
            for frame in frames:
                assert transport.send(peer, frame, kind="PushPull")
            st = transport.stats
            if bound == "service default":
                want = b"".join(length_prefixed(f) for f in frames)
                await wait_until(lambda: len(received) >= len(want), timeout=20, what="every frame")
                assert bytes(received) == want
                assert (st.dropped_write, st.write_timeouts, st.dials, streams) == (0, 0, 1, 1)
            else:
                await wait_until(lambda: st.write_timeouts >= 1, timeout=20, what="a timed-out write")
                release.set()
                await wait_until(lambda: streams >= 2, timeout=20, what="a second stream")
                assert st.dropped_write >= 1 and st.dials >= 2


class _RefusingDialer:
    """Connected to no one; every open runs out of time (``DialTimeout``) or is refused."""

    def __init__(self, timeout: bool) -> None:
        self.timeout = timeout
        self.why = "refused"

    def is_connected(self, _peer: object) -> bool:
        return False

    async def open_stream(self, *_args: object, **_kwargs: object) -> object:
        raise DialTimeout("timed out") if self.timeout else DialError(self.why)


class _ConnectingDialer(_RefusingDialer):
    """Its dial connects, then the stream's negotiation runs out of time."""

    def __init__(self) -> None:
        super().__init__(timeout=True)
        self.connected = False

    def is_connected(self, _peer: object) -> bool:
        return self.connected

    async def open_stream(self, *_args: object, **_kwargs: object) -> object:
        self.connected = True
        raise DialTimeout("timed out")


async def test_an_open_whose_dial_connected_but_whose_stream_did_not_says_so() -> None:
    """After a heal at 100 nodes most of SWIM's failed opens were of this kind:
    a connection to the peer was open by the time the bound ran out (ours, or
    one the peer opened meanwhile), and the stream was still not."""
    transport = SwimTransport(_ConnectingDialer(), lambda _p, _f: None, dial_timeout=1, write_timeout=1)
    await transport._open(ID(GHOST), (), kind="Ping:check")
    await transport._open(ID(GHOST), (), kind="Ping:check")  # connected as it began, this time
    assert transport.failed_opens == {"unconnected, connected by the failure: Ping:check: DialTimeout: timed out": 1,
                                      "connected: Ping:check: DialTimeout: timed out": 1}


async def test_opens_are_counted_by_kind_within_a_bound_and_timeouts_by_their_error() -> None:
    transport = SwimTransport(_RefusingDialer(timeout=True), lambda _p, _f: None, dial_timeout=1, write_timeout=1)
    pid = ID(GHOST)
    for i in range(MAX_KINDS + 8):
        assert await transport._open(pid, (), kind=f"Kind{i}") is None
    await transport._open(pid, (), kind="Kind0")
    await transport._open(pid, (), dial=False, kind="Leave")  # no dial allowed: needs no connection
    st = transport.stats
    assert (st.dials, st.dials_unconnected, st.dial_failures, st.dial_timeouts) == (MAX_KINDS + 10, MAX_KINDS + 9,
                                                                                   MAX_KINDS + 10, MAX_KINDS + 10)
    assert len(transport.dials_for) == MAX_KINDS and transport.dials_for["Kind0"] == 2  # later kinds not counted

    refused = SwimTransport(_RefusingDialer(timeout=False), lambda _p, _f: None, dial_timeout=1, write_timeout=1)
    await refused._open(pid, (), kind="Ping")
    assert (refused.stats.dial_failures, refused.stats.dial_timeouts) == (1, 0)

    service = SwimService()
    service._transport = transport
    exported = service.transport_stats()
    assert exported["dials_for_Kind0"] == 2 and exported["dial_timeouts"] == MAX_KINDS + 10
    assert exported["failed_open: unconnected: Kind0: DialTimeout: timed out"] == 2  # by kind too
    assert sum(v for k, v in exported.items() if k.startswith("failed_open: ")) == MAX_KINDS + 10


async def test_failed_opens_are_counted_by_reason_within_a_bound() -> None:
    transport = SwimTransport(_RefusingDialer(timeout=False), lambda _p, _f: None, dial_timeout=1, write_timeout=1)
    pid = ID(GHOST)
    # Numbers differ, the cause is one: counted together.
    for why in ("refused after 3 s", "refused after 4.5 s"):
        transport._dialer.why = why  # type: ignore[attr-defined]
        await transport._open(pid, (), kind="Ping")
    assert transport.failed_opens == {"unconnected: Ping: DialError: refused after N s": 2}
    # Distinct causes: at most MAX_KINDS reasons, the rest as "other".
    for i in range(MAX_KINDS + 5):
        transport._dialer.why = f"refused {chr(65 + i % 26)}{chr(65 + i // 26)}"  # type: ignore[attr-defined]
        await transport._open(pid, (), kind="Ping")
    assert len(transport.failed_opens) == MAX_KINDS + 1 and transport.failed_opens["other"] == 6
    assert sum(transport.failed_opens.values()) == transport.stats.dial_failures == MAX_KINDS + 7
