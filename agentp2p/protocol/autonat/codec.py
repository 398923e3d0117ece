"""AutoNAT v1 messages to and from bytes, checked before anything trusts them.

A request is one ``Message{type=DIAL}`` naming the asker and the addresses
it wants dialed; an answer one ``Message{type=DIAL_RESPONSE}``. Both are
small (go-libp2p caps them at 4 KiB), so anything larger, or not a message
of the expected type, is a :class:`CodecError` and the stream is reset.
Addresses stay bytes here: turning them into multiaddrs (and skipping the
ones that do not parse) is the dial policy's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from agentp2p.network.framing import parse_bounded
from agentp2p.pb import autonat_pb2 as pb

__all__ = [
    "CodecError", "DialRequest", "DialResponse", "MAX_MESSAGE_BYTES", "MAX_REQUEST_ADDRS", "PROTOCOL_ID", "Status",
    "decode_request", "decode_response", "encode_request", "encode_response",
]

PROTOCOL_ID = "/libp2p/autonat/1.0.0"
#: Largest message either way (go-libp2p's maxMsgSize).
MAX_MESSAGE_BYTES = 4096
#: Addresses a request may name; more is a bad request, not a longer dial list.
MAX_REQUEST_ADDRS = 64
_MAX_STATUS_TEXT = 256


class CodecError(ValueError):
    """The peer's bytes are not the message expected here."""


class Status(IntEnum):
    OK = pb.Message.OK
    E_DIAL_ERROR = pb.Message.E_DIAL_ERROR
    E_DIAL_REFUSED = pb.Message.E_DIAL_REFUSED
    E_BAD_REQUEST = pb.Message.E_BAD_REQUEST
    E_INTERNAL_ERROR = pb.Message.E_INTERNAL_ERROR


@dataclass(frozen=True, slots=True)
class DialRequest:
    peer_id: bytes
    addrs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DialResponse:
    status: Status
    text: str = ""
    addr: bytes = b""


def encode_request(peer_id: bytes, addrs: list[bytes]) -> bytes:
    msg = pb.Message(type=pb.Message.DIAL)
    msg.dial.peer.id = peer_id
    msg.dial.peer.addrs.extend(addrs[:MAX_REQUEST_ADDRS])
    return msg.SerializeToString()


def encode_response(status: Status, text: str = "", addr: bytes = b"") -> bytes:
    msg = pb.Message(type=pb.Message.DIAL_RESPONSE)
    msg.dialResponse.status = int(status)
    if text:
        msg.dialResponse.statusText = text[:_MAX_STATUS_TEXT]
    if addr:
        msg.dialResponse.addr = addr
    return msg.SerializeToString()


def _parse(data: bytes) -> pb.Message:
    return parse_bounded(pb.Message(), data, MAX_MESSAGE_BYTES, CodecError, "AutoNAT message")


def decode_request(data: bytes) -> DialRequest:
    msg = _parse(data)
    if msg.type != pb.Message.DIAL or not msg.HasField("dial") or not msg.dial.HasField("peer"):
        raise CodecError("expected a DIAL message with a peer")
    peer = msg.dial.peer
    if len(peer.addrs) > MAX_REQUEST_ADDRS:
        raise CodecError(f"{len(peer.addrs)} addresses (at most {MAX_REQUEST_ADDRS})")
    return DialRequest(bytes(peer.id), tuple(bytes(a) for a in peer.addrs))


def decode_response(data: bytes) -> DialResponse:
    msg = _parse(data)
    if msg.type != pb.Message.DIAL_RESPONSE or not msg.HasField("dialResponse"):
        raise CodecError("expected a DIAL_RESPONSE message")
    r = msg.dialResponse
    if not r.HasField("status"):
        # proto2 keeps an unknown enum value out of the field: unread, it would say OK.
        raise CodecError("answer without a (known) status")
    try:
        status = Status(r.status)
    except ValueError:
        raise CodecError(f"unknown status {r.status}") from None
    return DialResponse(status, r.statusText[:_MAX_STATUS_TEXT], bytes(r.addr))
