"""Varint-length-prefixed frames on a byte stream (the libp2p convention).

Our protocols (messaging, SWIM) write protobuf frames, each preceded by its
length as an unsigned varint. :class:`FrameReader` is the sans-IO splitter:
feed it whatever a stream read returned, get back every complete frame. It
bounds both the length prefix and the frame size, so a peer cannot make us
buffer without limit; a violation raises :class:`FrameError` and the caller
resets the stream.

:func:`read_message` reads one such frame from a stream and not a byte
more: for request/answer protocols, and for streams that turn into
something else after their control messages (a relay's circuit carries a
whole connection after them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FrameError", "FrameReader", "encode_varint", "length_prefixed", "read_message"]


class FrameError(ValueError):
    """The peer sent bytes that are not a valid frame; the stream should be reset."""


def encode_varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_prefixed(frame: bytes) -> bytes:
    """``frame`` ready to write to the stream."""
    return encode_varint(len(frame)) + frame


class FrameReader:
    """Split a byte stream into frames (without parsing them)."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete frame now available."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos, n = 0, len(buf)
        while pos < n:
            length = shift = 0
            i = pos
            while True:
                if i >= n:
                    del buf[:pos]
                    return frames  # length prefix incomplete
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > 28:
                    raise FrameError("length prefix too long")
            if length > self.max_frame_bytes:
                raise FrameError(f"frame of {length} bytes exceeds {self.max_frame_bytes}")
            if i + length > n:
                break
            frames.append(bytes(buf[i : i + length]))
            pos = i + length
        del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf)


async def _read_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = await stream.read(n - len(data))
        except EOFError:  # py-libp2p's StreamEOF (not imported: this module stays light)
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


def parse_bounded(msg: Any, data: bytes, limit: int, error: type[Exception], what: str) -> Any:
    """``msg`` (a protobuf message) parsed from ``data``, refusing more than
    ``limit`` bytes, bytes that do not parse, and a missing required field
    (proto2's parser does not check, and drops enum values it does not
    know): each an ``error`` naming ``what``."""
    from google.protobuf.message import DecodeError

    if len(data) > limit:
        raise error(f"{what} of {len(data)} bytes (at most {limit})")
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise error(f"unreadable {what}: {exc}") from None
    if not msg.IsInitialized():
        raise error(f"{what} without a required field (or with a value we do not know)")
    return msg
