"""A writer's timeout must not break the connection it writes on.

Noise numbers each frame as it encrypts it, before the bytes reach the
socket. py-libp2p lets a writing task be cancelled (its caller's timeout)
while an encrypted frame waits for socket space: the frame is then half sent,
or not sent with its nonce spent, and the peer fails to decrypt everything
after it — the connection carries nothing more, on any of its streams. Under pub/sub
overload this closed hundreds of connections per run.

Ours finishes the frame first (the caller's cancellation lands right after),
so only that caller's message is cut (its stream reset), never the
connection; a frame that cannot go out in ``FRAME_WRITE_TIMEOUT`` closes the
connection instead.

The socket fills for real: the writer reaches the reader through a TCP proxy
on 127.0.0.1 that stops reading from the writer on request.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import trio

from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from agentp2p.network.yamux import FRAME_WRITE_TIMEOUT, yamux_guard
from agentp2p.node import Node
from agentp2p.testing import library_host, local_config, wait_until

SINK = TProtocol("/agentp2p/test-sink/1.0.0")
#: Under one stream's initial window (256 KiB): a write never waits for a
#: window update, only for socket space.
CHUNK = b"\xa5" * (200 << 10)
#: Streams opened before the proxy stops: enough chunks to fill the socket
#: buffers between writer and proxy (a few MiB on loopback).
STREAMS = 120
#: The writer's timeout per chunk once the proxy has stopped.
GIVE_UP = 0.5


class _Proxy:
    """Forwards TCP connections to ``port``; the dialer-to-target direction can be stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.flowing = trio.Event()
        self.flowing.set()
        self.listen_port = 0

    def stop(self) -> None:
        self.flowing = trio.Event()

    def resume(self) -> None:
        self.flowing.set()

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up quickly
        await sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        listener = trio.SocketListener(sock)
        self.listen_port = sock.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, [listener])

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, stoppable: bool) -> None:
        try:
            while True:
                if stoppable:
                    await self.flowing.wait()
                data = await src.receive_some(4096)
                if not data:
                    break
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await dst.aclose()

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, True)
            nursery.start_soon(self._pump, upstream, client, False)


async def _cut_a_write(writer: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Connect ``writer`` (a host) to a library reader through a proxy, fill
    the socket, and let a write's timeout fire while its frame waits.

    Returns (reader host, the writer's connection, what happened)."""
    got: list[int] = []

    async def sink(stream: Any) -> None:
        try:
            while data := await stream.read(1 << 16):
                got.append(len(data))
        except Exception:  # noqa: BLE001 — reset or connection gone
            pass

    reader = library_host()
    reader.set_stream_handler(SINK, sink)
    state: dict[str, Any] = {"scope": None, "cut": False, "done": False}
    async with reader.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]), trio.open_nursery() as nursery:
        port = int(reader.get_addrs()[0].value_for_protocol("tcp"))
        proxy = _Proxy(port)
        await nursery.start(proxy.serve)
        via = Multiaddr(f"/ip4/127.0.0.1/tcp/{proxy.listen_port}")
        await writer.connect(PeerInfo(reader.get_id(), [via]))
        conn = writer.get_network().get_connections(reader.get_id())[0]
        streams = [await writer.new_stream(reader.get_id(), [SINK]) for _ in range(STREAMS)]
        proxy.stop()

        async def write_until_cut() -> None:
            for stream in streams:
                with trio.move_on_after(GIVE_UP) as scope:
                    state["scope"] = scope
                    await stream.write(CHUNK)
                if scope.cancelled_caught:
                    state["cut"] = True
                    break
            state["done"] = True

        nursery.start_soon(write_until_cut)

        def gave_up() -> bool:
            scope = state["scope"]
            # Cut (the library), or still writing past its deadline (ours:
            # the frame waits for the proxy, the cancellation for the frame).
            return state["cut"] or (scope is not None and not state["done"] and scope.deadline < trio.current_time())

        await wait_until(gave_up, 30, "a write whose timeout fired while its frame waited for the socket")
        assert not (state["done"] and not state["cut"]), f"{STREAMS} chunks went through without filling the socket"
        proxy.resume()
        await wait_until(lambda: state["done"], 30, "the writer to return")

        # Does the connection still carry data? A fresh message on a stream
        # opened now (over the same connection if it lives).
        delivered_before = len(got)
        alive = True
        try:
            with trio.fail_after(10):
                stream = await writer.new_stream(reader.get_id(), [SINK])
                await stream.write(b"after")
                await stream.close()
            await wait_until(lambda: len(got) > delivered_before and got[-1] == len(b"after"), 10, "the message after")
        except Exception:  # noqa: BLE001
            alive = False
        state["alive"] = alive
        # Read while the reader still runs: once it stops, every connection
        # to it closes anyway.
        state["closed"] = conn.muxed_conn.is_closed
        state["same_connection"] = writer.get_network().get_connections(reader.get_id())[:1] == [conn]
        state["reader_connections"] = len(reader.get_network().get_connections(writer.get_id()))
        nursery.cancel_scope.cancel()
    return reader, conn, state


async def test_library_loses_the_connection_when_a_write_times_out() -> None:
    writer = library_host()
    async with writer.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        _reader, conn, state = await _cut_a_write(writer)
        assert state["cut"]
        # The reader could not decrypt past the cut frame: the message sent
        # after it never arrived. (In our runs the connection even stayed
        # open on both sides, carrying nothing; not asserted, as a reader
        # that closes on a bad frame would be the library's behaviour too.)
        assert not state["alive"], repr(state)


async def test_ours_finishes_the_frame_and_keeps_the_connection() -> None:
    async with Node(local_config(swim=False)) as node:
        _reader, conn, state = await _cut_a_write(node.host)
        assert state["cut"]  # the caller still got its timeout, once the frame was out
        assert state["alive"] and state["same_connection"]
        # Read while the reader still ran: after it stops, the connection
        # closes with it (checking here raced that close).
        assert not state["closed"], state
        guard = yamux_guard(node.host)
        assert guard is not None and guard.stats["writes_shielded"] >= 1
        assert guard.stats["write_stalls"] == 0


@contextlib.asynccontextmanager
async def _behind_a_stopped_proxy() -> AsyncIterator[tuple[Node, Any, list[Any], trio.Nursery]]:
    """Our node connected through a proxy to a reader that never reads; the
    proxy stopped. Yields (node, its connection, STREAMS open streams, a nursery)."""
    reader = library_host()
    reader.set_stream_handler(SINK, lambda stream: trio.sleep_forever())
    async with Node(local_config(swim=False)) as node, reader.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with trio.open_nursery() as nursery:
            proxy = _Proxy(int(reader.get_addrs()[0].value_for_protocol("tcp")))
            await nursery.start(proxy.serve)
            await node.host.connect(PeerInfo(reader.get_id(), [Multiaddr(f"/ip4/127.0.0.1/tcp/{proxy.listen_port}")]))
            conn = node.host.get_network().get_connections(reader.get_id())[0]
            streams = [await node.host.new_stream(reader.get_id(), [SINK]) for _ in range(STREAMS)]
            proxy.stop()
            yield node, conn, streams, nursery
            nursery.cancel_scope.cancel()


async def test_ours_closes_a_connection_whose_frame_cannot_go_out(monkeypatch: Any) -> None:
    """The peer stops reading for good: the frame's wait is bounded, and the
    connection (which may hold half of it) is closed, not left stuck."""
    monkeypatch.setattr("agentp2p.network.yamux.FRAME_WRITE_TIMEOUT", 1.0)
    async with _behind_a_stopped_proxy() as (node, conn, streams, _nursery):
        error: BaseException | None = None
        with trio.fail_after(30):
            for stream in streams:
                try:
                    await stream.write(CHUNK)
                except Exception as exc:  # noqa: BLE001 — what we wait for
                    error = exc
                    break
        assert error is not None, f"{STREAMS} chunks went through without filling the socket"
        guard = yamux_guard(node.host)
        assert guard is not None and guard.stats["write_stalls"] == 1
        await wait_until(lambda: conn.muxed_conn.is_closed, 10, "the stalled connection to close")


async def test_closing_does_not_wait_out_a_stuck_frame() -> None:
    """A frame stuck behind a peer that stopped reading holds its shield for
    up to FRAME_WRITE_TIMEOUT; closing the connection cuts that short (a
    node's shutdown must not wait 10 s per such peer), and is no stall."""
    async with _behind_a_stopped_proxy() as (node, conn, streams, nursery):
        gate = conn.muxed_conn.secured_conn

        async def write_all() -> None:
            for stream in streams:
                try:
                    await stream.write(CHUNK)
                except Exception:  # noqa: BLE001 — the connection closes under it
                    return

        nursery.start_soon(write_all)

        def stuck() -> bool:
            scope = gate.writing  # the frame being written has been at it for 0.5 s
            return scope is not None and scope.deadline - FRAME_WRITE_TIMEOUT + 0.5 < trio.current_time()

        await wait_until(stuck, 30, "a frame stuck behind the stopped proxy")
        with trio.fail_after(FRAME_WRITE_TIMEOUT / 2):
            await conn.close()
        assert conn.muxed_conn.is_closed
        guard = yamux_guard(node.host)
        assert guard is not None and guard.stats["write_stalls"] == 0
