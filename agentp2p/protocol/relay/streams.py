"""Reading one length-prefixed control message without reading past it.

After the control messages, a relay stream carries a whole relayed
connection: a reader that pulled more bytes than the message would swallow
the start of the Noise handshake. So the varint prefix is read a byte at a
time and the body exactly (both are small).
"""

from __future__ import annotations

from typing import Any

from libp2p.network.stream.exceptions import StreamEOF

from agentp2p.network.framing import FrameError

__all__ = ["read_message"]


async def _read_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = await stream.read(n - len(data))
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise FrameError("stream ended inside a message")
        data += chunk
    return data


async def read_message(stream: Any, limit: int) -> bytes:
    """One varint-prefixed message of at most ``limit`` bytes, and not a byte more."""
    length = shift = 0
    while True:
        b = (await _read_exactly(stream, 1))[0]
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 28:
            raise FrameError("length prefix too long")
    if length > limit:
        raise FrameError(f"message of {length} bytes (at most {limit})")
    return await _read_exactly(stream, length)
