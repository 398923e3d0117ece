"""Window updates as go-yamux sends them: once half the window is consumed,
not after every read.

py-libp2p 0.8.1 answers every read that frees anything with a WINDOW_UPDATE
frame, so each small message (a SWIM ping, a pub/sub RPC, a DHT request)
costs a second frame back, encrypted and written. Ours grants window once
half of it has been read, and a bulk transfer far larger than the window
still flows to the end.
"""

from __future__ import annotations

from typing import Any

import trio
from libp2p.custom_types import TProtocol

from agentp2p.node import Node
from agentp2p.testing import LOOPBACK, library_host, local_config, wait_until

ECHO = TProtocol("/agentp2p/test-window-updates/1.0.0")
SMALL, ROUNDS = 100, 40


def _serve(updates: list[int], total: list[int]) -> Any:
    """A handler that counts its stream's window updates and acks each read with one byte."""

    async def handler(stream: Any) -> None:
        muxed = stream.muxed_stream
        send = muxed.send_window_update

        async def counting(increment: int, skip_lock: bool = False) -> None:
            updates.append(increment)
            await send(increment, skip_lock=skip_lock)

        muxed.send_window_update = counting
        while data := await stream.read(65536):
            total[0] += len(data)
            await stream.write(b"k")

    return handler


async def _small_round_trips(writer: Node, reader_addr: str, reader_id: Any) -> None:
    await writer.connect(reader_addr)
    stream = await writer.host.new_stream(reader_id, [ECHO])
    for _ in range(ROUNDS):
        await stream.write(b"m" * SMALL)
        with trio.fail_after(10):
            assert await stream.read(1) == b"k"
    await stream.close()


async def test_the_library_sends_a_window_update_after_every_small_read() -> None:
    updates: list[int] = []
    total = [0]
    reader = library_host()
    reader.set_stream_handler(ECHO, _serve(updates, total))
    async with reader.run([LOOPBACK]), Node(local_config(swim=False)) as writer:
        addr = f"{reader.get_transport_addrs()[0]}/p2p/{reader.get_id()}"
        await _small_round_trips(writer, addr, reader.get_id())
        await wait_until(lambda: total[0] == SMALL * ROUNDS, 10, "every message read")
    assert len(updates) >= ROUNDS  # one frame back per message


async def test_ours_sends_none_for_small_messages_and_keeps_a_bulk_transfer_flowing() -> None:
    updates: list[int] = []
    total = [0]
    async with Node(local_config(swim=False)) as reader, Node(local_config(swim=False)) as writer:
        reader.set_stream_handler(ECHO, _serve(updates, total))
        await _small_round_trips(writer, reader.addrs[0], reader.peer_id)
        await wait_until(lambda: total[0] == SMALL * ROUNDS, 10, "every message read")
        assert updates == []  # 4 KB read of a 256 KiB window: nothing to grant yet

        # 4 MiB, sixteen windows' worth: updates go out as the reader consumes
        # half a window at a time, and the writer is never left waiting.
        total[0] = 0
        stream = await writer.host.new_stream(reader.peer_id, [ECHO])
        chunk = b"b" * (64 << 10)
        with trio.fail_after(30):
            for _ in range(64):
                await stream.write(chunk)
            await wait_until(lambda: total[0] == 64 * len(chunk), 30, "all 4 MiB read")
        assert 1 <= len(updates) <= 64 * len(chunk) // (128 << 10) + 2
        assert sum(updates) >= 64 * len(chunk) - (256 << 10)  # granted all but at most one window
