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

from agentp2p.network.framing import FrameError, encode_varint, length_prefixed
from agentp2p.network.framing import FrameReader as _FrameReader
from agentp2p.pb.msg_pb2 import Frame

__all__ = [
    "FrameError",
    "FrameReader",
    "ENVELOPE_OVERHEAD",
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_BYTES",
    "decode_frame",
    "encode_data",
    "encode_varint",
    "length_prefixed",
    "max_envelope_for",
    "max_frame_for",
]

#: Largest payload of one message (SessionConfig.max_message_bytes; sealed
#: payloads included): the documented 1 MiB.
MAX_MESSAGE_BYTES = 1024 * 1024
#: What an envelope may carry besides its payload: id, type (<= 205 chars),
#: sender/recipient peer IDs, signature, session id, seq, flags.
ENVELOPE_OVERHEAD = 4 * 1024
#: Largest frame we accept: one maximal envelope plus a frame's own fields and
#: a full selective ACK. A larger length prefix is refused before a byte of
#: the frame is buffered (the stream is reset and the peer penalised). A
#: sender batches messages only up to SessionConfig.max_frame_bytes (256 KiB),
#: so an honest frame is either that or one message alone.
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES + ENVELOPE_OVERHEAD + 4 * 1024


def max_frame_for(max_message_bytes: int) -> int:
    """The frame limit that fits one message of ``max_message_bytes``."""
    return max_message_bytes + ENVELOPE_OVERHEAD + 4 * 1024


def max_envelope_for(max_message_bytes: int) -> int:
    """The encoded-envelope limit for a payload limit of ``max_message_bytes``."""
    return max_message_bytes + ENVELOPE_OVERHEAD

# protobuf tags (field number << 3 | wire type 2 "length-delimited", 0 "varint")
_FRAME_DATA = b"\x12"
_DATA_SESSION = b"\x0a"
_DATA_LOW_SEQ = b"\x10"
_DATA_MESSAGE = b"\x1a"
_DATA_ACK = b"\x22"


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


class FrameReader(_FrameReader):
    """Split a byte stream into messaging frames (without parsing them)."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes)
