"""py-libp2p 0.8.1's QUIC stream against ours (agentp2p/network/quic/stream.py),
on the stream alone: the connection is a stand-in that records credit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from libp2p.transport.quic.config import QUICTransportConfig
from libp2p.transport.quic.exceptions import QUICStreamClosedError, QUICStreamTimeoutError
from libp2p.transport.quic.stream import QUICStream, StreamDirection

from agentp2p.network.quic.stream import LosslessQUICStream

MiB = 1 << 20


class _Quic:
    """The aioquic side as our stream sees it: ``release`` is recorded."""

    def __init__(self) -> None:
        self.released = 0
        self.held = 0
        self.stopped: list[int] = []

    def hold(self, n: int) -> None:
        self.held += n

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.stopped.append(stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        pass

    def release(self, stream_id: int, n: int) -> bool:
        self.released += n
        self.held -= n
        return False


def _stream(cls: type[QUICStream], direction: StreamDirection = StreamDirection.INBOUND, **config: Any) -> Any:
    removed: list[int] = []
    conn = SimpleNamespace(
        removed=removed,
        _transmit=_noop,
        _transport=SimpleNamespace(_config=QUICTransportConfig(**config)),
        _quic=_Quic(),
        remote_peer_id=lambda: "peer",
        _signal_activity=lambda: None,
        _remove_stream=removed.append,
    )
    return cls(connection=conn, stream_id=0, direction=direction, remote_addr=("127.0.0.1", 1))


async def _read_all(stream: Any) -> bytes:
    out = bytearray()
    while True:
        try:
            out += await stream.read()
        except Exception:  # noqa: BLE001 — end of stream, in either class's words
            return bytes(out)


@pytest.mark.parametrize("cls, kept", [(QUICStream, 2 * MiB), (LosslessQUICStream, 3 * MiB)])
async def test_buffer_cap_drops_chunks_and_their_fin_ours_keeps_everything(cls: type[QUICStream], kept: int) -> None:
    """Three 1 MiB chunks, the FIN on the third: the library keeps 2 MiB (its
    MAX_STREAM_RECEIVE_BUFFER) and drops the third chunk with its FIN; ours
    keeps all three (what bounds it is the credit it grants, test_quic_credit.py)."""
    stream = _stream(cls)
    chunk = b"x" * MiB
    await stream.handle_data_received(chunk, False)
    await stream.handle_data_received(chunk, False)
    await stream.handle_data_received(chunk, True)
    assert len(stream._receive_buffer) == kept
    assert stream._read_closed is (cls is LosslessQUICStream)


async def test_ours_credits_what_is_read_and_what_is_abandoned() -> None:
    stream = _stream(LosslessQUICStream)
    await stream.handle_data_received(b"a" * 1000, False)
    assert await stream.read(300) == b"a" * 300
    assert stream._connection._quic.released == 300
    await stream._cleanup_resources()  # e.g. reset by the peer with 700 bytes unread
    assert stream._connection._quic.released == 1000
    assert await stream.read() == b"a" * 700  # still readable, not credited twice
    assert stream._connection._quic.released == 1000


async def test_library_read_times_out_an_idle_stream_ours_waits(autojump_clock: Any) -> None:
    """The library resets a stream whose read waits STREAM_READ_TIMEOUT (30 s
    by default; 0.05 s here); ours waits as long as the caller lets it.
    Virtual time (autojump_clock): no real waiting."""
    library = _stream(QUICStream, STREAM_READ_TIMEOUT=0.05)
    library.reset = _noop  # the reset would go to the (stand-in) connection
    with pytest.raises(QUICStreamTimeoutError):
        await library.read()

    ours = _stream(LosslessQUICStream, STREAM_READ_TIMEOUT=0.05)
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append(got, ours.read()))
        await trio.sleep(0.2)  # four read timeouts of the library: ours is still waiting
        assert got == []
        await ours.handle_data_received(b"late", True)
    assert got == [b"late"]
    with pytest.raises(EOFError):
        await ours.read()


async def test_ours_reads_data_and_fin_that_arrive_together_while_waiting() -> None:
    stream = _stream(LosslessQUICStream)
    async with trio.open_nursery() as nursery:
        result: list[bytes] = []
        nursery.start_soon(lambda: _append(result, _read_all(stream)))
        await trio.testing.wait_all_tasks_blocked()
        await stream.handle_data_received(b"tail", True)
    assert result == [b"tail"]


async def _append(out: list[bytes], awaitable: Any) -> None:
    out.append(await awaitable)


async def _noop(*args: Any, **kwargs: Any) -> None:
    return None


async def test_ours_closing_early_tells_the_peer_to_stop_sending() -> None:
    """close() with the peer's data still coming sends STOP_SENDING (the
    library's only stops our own side: the peer keeps sending into a stream
    nobody reads)."""
    stream = _stream(LosslessQUICStream)
    await stream.handle_data_received(b"z" * 100, False)
    await stream.close()
    assert stream._connection._quic.stopped == [0]
    assert stream._connection._quic.held == 0  # its unread bytes credited back
    assert stream._connection.removed == [0]


async def test_ours_cleans_up_a_stream_already_closed_both_ways() -> None:
    """Our FIN sent, then the peer's: the state is CLOSED before close(),
    where the library's close() returns without cleaning up."""
    for cls, cleaned in ((QUICStream, []), (LosslessQUICStream, [0])):
        stream = _stream(cls)
        stream._write_closed = True
        await stream.handle_data_received(b"tail", True)
        await stream.close()
        assert stream._connection.removed == cleaned


async def test_ours_reads_the_reply_after_the_peer_stops_our_sending() -> None:
    """The peer's STOP_SENDING closes our write side only; the library then
    calls an outbound stream CLOSED and refuses to read the peer's reply."""
    library = _stream(QUICStream, direction=StreamDirection.OUTBOUND)
    await library.handle_stop_sending(0)
    with pytest.raises(QUICStreamClosedError):
        await library.read()  # before the reply arrived

    ours = _stream(LosslessQUICStream, direction=StreamDirection.OUTBOUND)
    await ours.handle_stop_sending(0)
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append(got, ours.read()))
        await trio.testing.wait_all_tasks_blocked()
        await ours.handle_data_received(b"reply", True)
    assert got == [b"reply"]
