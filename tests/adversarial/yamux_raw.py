"""Raw Yamux frames for attack tests: an attacker that dials with a plain
py-libp2p host (Noise + the library's Yamux) and then writes frames of its
choosing on the secured connection, ignoring flow control.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import trio
from multiaddr import Multiaddr

from libp2p.peer.peerinfo import PeerInfo
from libp2p.utils.varint import encode_varint_prefixed

from agentp2p.testing import LOOPBACK
from agentp2p.testing import library_host as plain_host  # noqa: F401 — the tests import it from here

TYPE_DATA, TYPE_WINDOW_UPDATE = 0, 1
SYN, ACK, FIN, RST = 1, 2, 4, 8
SINK = "/agentp2p/test-sink/1.0.0"
#: Stream IDs the attacker picks for its raw streams (odd: it dialed), far
#: above those its own library opens (identify, ping).
FIRST_RAW_STREAM = 100001


def frame(typ: int, flags: int, sid: int, payload: bytes = b"", length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack("!BBHII", 0, typ, flags, sid, n) + payload


def select(protocol: str) -> bytes:
    """The dialer's side of multistream-select, pipelined (no waiting for replies)."""
    return encode_varint_prefixed(b"/multistream/1.0.0\n") + encode_varint_prefixed(protocol.encode() + b"\n")


@contextlib.asynccontextmanager
async def raw_attacker(peer_id: Any, addrs: list[Multiaddr]) -> AsyncIterator[Any]:
    """A connected attacker; yields its (library) Yamux connection to the victim."""
    host = plain_host()
    async with host.run([LOOPBACK]):
        with trio.fail_after(10):
            await host.connect(PeerInfo(peer_id, addrs))
        conns = host.get_network().get_connections(peer_id)
        muxed = conns[0].muxed_conn
        muxed.attacker_host = host
        yield muxed


def closed(muxed: Any) -> bool:
    return bool(muxed.event_shutting_down.is_set() or muxed.is_closed)


async def write(muxed: Any, data: bytes) -> bool:
    """Write raw bytes on the muxed connection; False once it is closed."""
    if closed(muxed):
        return False
    try:
        with trio.fail_after(5):
            await muxed._write_frame(data)
    except Exception:
        return False
    return not closed(muxed)


async def flood_stream(muxed: Any, sid: int, total: int, chunk: int = 65536) -> int:
    """DATA frames on ``sid`` without waiting for window updates; bytes sent."""
    sent = 0
    payload = b"\xab" * chunk
    while sent < total:
        if not await write(muxed, frame(TYPE_DATA, 0, sid, payload)):
            break
        sent += chunk
    return sent
