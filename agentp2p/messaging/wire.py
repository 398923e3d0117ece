"""Bytes on the /agentp2p/msg/1.0.0 stream: varint-length-prefixed Frames.

:class:`FrameReader` is a sans-IO splitter (feed it whatever the stream read
returned, get whole frames back) that refuses oversized lengths before
buffering them. :func:`encode_data` builds a Data frame straight from the
envelopes' cached encodings, so a retransmission or a batch of 500 messages
costs a ``b"".join`` rather than a protobuf re-serialization; the result is an
ordinary protobuf encoding that any implementation parses.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from agentp2p.pb.msg_pb2 import Frame

__all__ = [
    "FrameError",
    "FrameReader",
    "MAX_FRAME_BYTES",
    "decode_frame",
    "encode_data",
    "encode_varint",
    "length_prefixed",
]

#: Largest frame we accept. A frame carries at least one whole message, so
#: this also bounds message size (see SessionConfig.max_message_bytes).
MAX_FRAME_BYTES = 4 * 1024 * 1024

# protobuf tags (field number << 3 | wire type 2 "length-delimited", 0 "varint")
_FRAME_DATA = b"\x12"
_DATA_SESSION = b"\x0a"
_DATA_LOW_SEQ = b"\x10"
_DATA_MESSAGE = b"\x1a"
_DATA_ACK = b"\x22"


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


def encode_data(session_id: bytes, low_seq: int, messages: list[bytes], ack: bytes | None) -> bytes:
    """Encode ``Frame{data: Data{...}}`` from already-serialized Envelopes/Ack."""
    parts = [_DATA_SESSION, encode_varint(len(session_id)), session_id, _DATA_LOW_SEQ, encode_varint(low_seq)]
    for m in messages:
        parts += (_DATA_MESSAGE, encode_varint(len(m)), m)
    if ack is not None:
        parts += (_DATA_ACK, encode_varint(len(ack)), ack)
    body = b"".join(parts)
    return _FRAME_DATA + encode_varint(len(body)) + body


def decode_frame(data: bytes) -> Frame:
    try:
        frame = Frame.FromString(data)
    except DecodeError as exc:
        raise FrameError(f"frame does not parse: {exc}") from exc
    if frame.WhichOneof("body") is None:
        raise FrameError("empty frame")
    return frame


class FrameReader:
    """Split a byte stream into frames (without parsing them)."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete frame now available."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        n = len(buf)
        while pos < n:
            length = 0
            shift = 0
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
