"""A write that runs out of window must not leave half a message on the stream,
nor fail because the reader is slow.

py-libp2p's Yamux sends what the window allows, waits 5 s for a window
update, then raises — with part of the data already sent. The reader sees a
truncated message followed by nothing after it: it waits for the rest of a message that never comes
(the writer's side only marks its own handle as reset). Ours waits for the
window as long as the caller lets it (a slow reader is backpressure, not an
error), and resets the stream when the caller gives up mid-message, so the
reader learns at once.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo

from agentp2p.node import Node
from agentp2p.testing import LOOPBACK, local_config, wait_until
from agentp2p.testing import library_host

HOLD = TProtocol("/agentp2p/test-hold-unread/1.0.0")
#: More than the window a reader grants before it reads anything (py-libp2p
#: opens with 256 KiB and grows it towards 16 MiB as the connection warms).
BIG = b"\x5a" * (24 << 20)


#: Longer than the library's 5 s wait for a window update.
PAST_LIBRARY_WAIT = 6.5


async def _write_to_unread_stream(writer_host: Any, give_up_after: float = 30) -> tuple[Any, BaseException]:
    """Open a stream to a peer that never reads, write BIG; (peer's stream, writer's error)."""
    held: list[Any] = []

    async def hold(stream: Any) -> None:
        held.append(stream)
        await trio.sleep_forever()

    reader = library_host()
    reader.set_stream_handler(HOLD, hold)
    async with reader.run([LOOPBACK]):
        await writer_host.connect(PeerInfo(reader.get_id(), reader.get_transport_addrs()))
        stream = await writer_host.new_stream(reader.get_id(), [HOLD])
        with pytest.raises(Exception) as failed:
            with trio.fail_after(give_up_after):
                await stream.write(BIG)
        await wait_until(lambda: bool(held), 10, "the reader's stream")
        muxed = held[0].muxed_stream
        # The writer's side settles (reset sent or not) before we look.
        with trio.move_on_after(1):
            await wait_until(lambda: muxed.reset_received, 1, "reset")
        return muxed, failed.value


async def test_library_leaves_half_a_message_on_the_stream() -> None:
    writer = library_host()
    async with writer.run([LOOPBACK]):
        muxed, _ = await _write_to_unread_stream(writer)
        assert not muxed.reset_received
        assert 0 < len(muxed.conn.stream_buffers[muxed.stream_id]) < len(BIG)


async def test_ours_waits_then_resets_when_the_caller_gives_up() -> None:
    async with Node(local_config(swim=False)) as writer:
        muxed, error = await _write_to_unread_stream(writer.host, give_up_after=PAST_LIBRARY_WAIT)
        assert isinstance(error, trio.TooSlowError)  # our caller's deadline, not the library's 5 s
        assert muxed.reset_received


async def _write_to_slow_reader(writer_host: Any) -> tuple[bytes, Exception | None]:
    """Write BIG to a peer that starts reading only once the writer has waited
    on a closed window for longer than the library's 5 s; (what the reader
    got, the writer's error)."""
    got = bytearray()
    blocked_since: list[float] = []
    done = trio.Event()

    async def slow(stream: Any) -> None:
        # Read nothing until the writer has sat on a closed window past the limit.
        while not blocked_since or trio.current_time() - blocked_since[0] < PAST_LIBRARY_WAIT:
            await trio.sleep(0.05)
        try:
            while len(got) < len(BIG):
                got.extend(await stream.read(1 << 20))
        finally:
            done.set()

    reader = library_host()
    reader.set_stream_handler(HOLD, slow)
    async with reader.run([LOOPBACK]):
        await writer_host.connect(PeerInfo(reader.get_id(), reader.get_transport_addrs()))
        stream = await writer_host.new_stream(reader.get_id(), [HOLD])

        async def watch_window() -> None:
            await wait_until(lambda: stream.muxed_stream.send_window <= 0, 10, "the window to close")
            blocked_since.append(trio.current_time())

        error: Exception | None = None
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_window)
                try:
                    await stream.write(BIG)
                except Exception as exc:  # noqa: BLE001 — what the library does is the point
                    error = exc
            if error is None:
                await done.wait()
    return bytes(got), error


async def test_library_fails_a_write_to_a_slow_reader() -> None:
    writer = library_host()
    async with writer.run([LOOPBACK]):
        got, error = await _write_to_slow_reader(writer)
    # MuxedStreamError("Timed out waiting for window update after 5 seconds"),
    # which the library's stream wrapper turns into a bare StreamReset.
    assert error is not None and len(got) < len(BIG)


async def test_ours_waits_for_a_slow_reader() -> None:
    async with Node(local_config(swim=False)) as writer:
        got, error = await _write_to_slow_reader(writer.host)
    assert error is None and got == BIG


ONE, TWO = b"\x01" * (300 * 1024), b"\x02" * (300 * 1024)


async def _two_concurrent_writes(writer_host: Any) -> bytes:
    """Two tasks each write a 300 KiB message to one stream; what the reader got."""
    got = bytearray()
    done = trio.Event()

    async def read_all(stream: Any) -> None:
        while len(got) < len(ONE) + len(TWO):
            got.extend(await stream.read(65536))
        done.set()

    reader = library_host()
    reader.set_stream_handler(HOLD, read_all)
    async with reader.run([LOOPBACK]):
        await writer_host.connect(PeerInfo(reader.get_id(), reader.get_transport_addrs()))
        stream = await writer_host.new_stream(reader.get_id(), [HOLD])
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.write, ONE)
                nursery.start_soon(stream.write, TWO)
            await done.wait()
    return bytes(got)


async def test_library_interleaves_concurrent_writes() -> None:
    writer = library_host()
    async with writer.run([LOOPBACK]):
        got = await _two_concurrent_writes(writer)
    assert sorted(got) == sorted(ONE + TWO)  # every byte arrived...
    assert got not in (ONE + TWO, TWO + ONE)  # ...but the two messages are mixed


async def test_ours_writes_each_message_whole() -> None:
    async with Node(local_config(swim=False)) as writer:
        got = await _two_concurrent_writes(writer.host)
    assert got in (ONE + TWO, TWO + ONE)
