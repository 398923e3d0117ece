"""network/buffered.py: a raw connection's reads in bulk, served from one bounded buffer.

The library reads each Noise message from the socket in two reads (its
length, then its body); a node's connections read through
:class:`BufferedReads`, which asks the socket for up to 64 KiB at a time and
hands the same byte stream out in the pieces asked for.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.io.trio import TrioTCPStream
from libp2p.security.noise.io import NoisePacketReadWriter

from agentp2p.network.buffered import READ_CHUNK, BufferedReads
from agentp2p.network.psk import write_psk_file
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


class _Counting:
    """A raw connection that counts the reads made of it."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        return await self._inner.read(n)  # type: ignore[attr-defined]


class _Chunks:
    """A fake connection below: hands out ``data`` in the given chunk sizes, then EOF."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._sizes = sizes
        self.reads = 0
        self.asked: list[int | None] = []

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        self.asked.append(n)
        await trio.lowlevel.checkpoint()
        size = self._sizes.pop(0) if self._sizes else len(self._data)
        if n is not None and n >= 0:
            size = min(size, n)
        out, self._data = self._data[:size], self._data[size:]
        return out


async def _socket_pair() -> tuple[RawConnection, RawConnection]:
    """Two raw connections over a real 127.0.0.1 TCP socket."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return RawConnection(TrioTCPStream(client), True), RawConnection(TrioTCPStream(server), False)


async def _noise_frames_read(wrap: bool, messages: list[bytes]) -> tuple[list[bytes], int]:
    """Write ``messages`` Noise-framed (2-byte length) in one go; read them back
    as the library's Noise does; how many reads reached the socket."""
    sender, receiver = await _socket_pair()
    try:
        await sender.write(b"".join(len(m).to_bytes(2, "big") + m for m in messages))
        counting = _Counting(receiver)
        reader = NoisePacketReadWriter(BufferedReads(counting) if wrap else counting)  # type: ignore[arg-type]
        got = [await reader.read_msg() for _ in messages]
        return got, counting.reads
    finally:
        await sender.close()
        await receiver.close()


@pytest.mark.trio
async def test_the_library_reads_the_socket_twice_a_message_we_once_for_all_that_arrived() -> None:
    messages = [bytes([i]) * (40 + i) for i in range(100)]
    got, reads = await _noise_frames_read(False, messages)
    assert got == messages
    assert reads == 2 * len(messages)  # py-libp2p: the length, then the body
    got, reads = await _noise_frames_read(True, messages)
    assert got == messages
    # The sender wrote all 100 (~9 KB) before the first read; on loopback they
    # are in the receiver's socket buffer by then: one read takes them all.
    assert reads <= 2, reads


@pytest.mark.trio
@pytest.mark.parametrize("seed", range(5))
async def test_the_same_byte_stream_in_the_pieces_asked_for(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(50_000)
    chunk = rng.choice([1, 7, 100, 4096])
    inner = _Chunks(data, [rng.randint(1, 9000) for _ in range(200)])
    buf = BufferedReads(inner, chunk=chunk)
    out = bytearray()
    while True:
        n = rng.choice([1, 2, 12, 300, 5000, 70_000])
        piece = await buf.read(n)
        assert len(piece) <= n
        assert buf.held <= chunk  # never more than one read's worth held
        if not piece:
            break
        out += piece
    assert bytes(out) == data
    assert all(asked is not None and asked >= chunk for asked in inner.asked)


@pytest.mark.trio
async def test_a_held_read_does_not_go_through_the_scheduler() -> None:
    buf = BufferedReads(_Chunks(b"abcdefgh", [8]))
    assert await buf.read(2) == b"ab"
    assert buf.held == 6
    with trio.CancelScope() as scope:
        scope.cancel()
        # No checkpoint while bytes are held: a cancelled task still gets them.
        assert await buf.read(3) == b"cde"
        assert await buf.read(0) == b""
        assert await buf.read(None) == b"fgh"
        with pytest.raises(trio.Cancelled):
            await buf.read(1)  # nothing held: the read goes below, and checkpoints
    assert await buf.read(1) == b""  # end of stream passes through
    with pytest.raises(ValueError):
        BufferedReads(_Chunks(b"", []), chunk=0)


class _Waiting:
    """A connection below whose read waits until released."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.asked: list[int | None] = []

    async def read(self, n: int | None = None) -> bytes:
        self.asked.append(n)
        await self.release.wait()
        return b"xyz"

    async def close(self) -> None:
        pass


@pytest.mark.trio
async def test_a_second_reader_is_refused_not_served_out_of_order() -> None:
    inner = _Waiting()
    buf = BufferedReads(inner)  # type: ignore[arg-type]
    got: list[bytes] = []

    async def first() -> None:
        got.append(await buf.read(1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await wait_until(lambda: inner.asked, 5, "the first read to wait below")
        with pytest.raises(trio.BusyResourceError):
            await buf.read(1)
        inner.release.set()
    assert got == [b"x"]
    assert await buf.read(-1) == b"yz"  # negative: all that is held
    assert await buf.read(-5) == b"xyz"  # nothing held: one read below, unbounded
    assert inner.asked == [READ_CHUNK, None]
    assert await buf.read(1) == b"x"
    await buf.close()  # what was held goes with the connection
    assert buf.held == 0


def test_install_is_idempotent_and_keeps_the_private_networks_mark() -> None:
    from types import SimpleNamespace

    from agentp2p.network.buffered import install_buffered_reads
    from agentp2p.network.pnet import install_pnet

    async def upgrade(raw: object, is_initiator: bool, peer_id: object = None) -> object:
        return raw

    network = SimpleNamespace(upgrader=SimpleNamespace(upgrade_security=upgrade), dial_peer=lambda *a: None)
    host = SimpleNamespace(get_network=lambda: network)
    install_pnet(host, None, timeout=5)
    pnet = network.upgrader.upgrade_security
    install_buffered_reads(host)
    buffered = network.upgrader.upgrade_security
    assert buffered is not pnet
    install_pnet(host, None, timeout=5)  # sees its mark on the outer wrapper: no second layer
    install_buffered_reads(host)
    assert network.upgrader.upgrade_security is buffered


def _reads_buffered(conn: object) -> BufferedReads | None:
    """The BufferedReads under a swarm connection's muxer, if any."""
    obj = conn.muxed_conn  # type: ignore[attr-defined]
    for _ in range(12):
        if isinstance(obj, BufferedReads):
            return obj
        nxt = None
        for attr in ("secured_conn", "_inner", "conn", "read_write_closer"):
            if attr in getattr(obj, "__dict__", {}):
                nxt = getattr(obj, attr)
                break
        if nxt is None:
            return None
        obj = nxt
    return None


@pytest.mark.trio
@pytest.mark.parametrize("private", [False, True], ids=["public", "private-network"])
async def test_a_nodes_connections_read_through_it_both_ways(private: bool, tmp_path: Path) -> None:
    # A private network's cipher (pnet.py) reads through it too: it sits below.
    psk = None
    if private:
        psk = tmp_path / "net.key"
        write_psk_file(psk)
    async with Node(local_config(swim=False, psk=psk)) as a, Node(local_config(swim=False, psk=psk)) as b:
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), 10, "A to see B")
        for node, peer in ((a, b.peer_id), (b, a.peer_id)):
            conns = [c for pid, cs in node.host.get_network().connections.items() if str(pid) == str(peer)
                     for c in cs]
            found = [_reads_buffered(c) for c in conns]
            assert found and all(isinstance(f, BufferedReads) for f in found), found
            assert all(f._chunk == READ_CHUNK for f in found if f is not None)
        # and the connection works through it: a ping both ways
        assert await b.ping(str(a.peer_id)) >= 0
        assert await a.ping(str(b.peer_id)) >= 0
