"""Circuit relay v2 messages: bytes to checked protobuf and back.

Both protocols exchange small control messages (go-libp2p caps them at
4 KiB) before a stream turns into a relayed connection; anything larger,
unparseable, or missing a required field is a :class:`CodecError`, and the
handler answers ``MALFORMED_MESSAGE`` where the protocol has a reply.
"""

from __future__ import annotations

from typing import Any

from agentp2p.network.framing import parse_bounded
from agentp2p.pb import circuit_pb2 as pb

__all__ = [
    "CodecError", "HOP_PROTOCOL", "MAX_MESSAGE_BYTES", "STOP_PROTOCOL", "Status", "decode_hop", "decode_stop",
    "hop_status", "limit_of", "pb",
]

HOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/hop"
STOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/stop"
MAX_MESSAGE_BYTES = 4096
#: Addresses a Peer or Reservation may carry before we stop reading them.
MAX_ADDRS = 32

Status = pb.Status


class CodecError(ValueError):
    """Not a relay message we can act on."""


def _decode(msg: Any, data: bytes) -> Any:
    """``msg`` (a HopMessage or StopMessage) parsed from ``data`` and checked."""
    parse_bounded(msg, data, MAX_MESSAGE_BYTES, CodecError, "relay message")
    if msg.HasField("peer") and len(msg.peer.addrs) > MAX_ADDRS:
        raise CodecError("too many addresses")
    if msg.type == type(msg).STATUS and not msg.HasField("status"):
        raise CodecError("STATUS without a (known) status")
    return msg


def decode_hop(data: bytes) -> pb.HopMessage:
    return _decode(pb.HopMessage(), data)


def decode_stop(data: bytes) -> pb.StopMessage:
    return _decode(pb.StopMessage(), data)


def hop_status(status: int, **fields: object) -> bytes:
    msg = pb.HopMessage(type=pb.HopMessage.STATUS, status=status)  # type: ignore[arg-type]
    for name, value in fields.items():
        getattr(msg, name).CopyFrom(value)
    return msg.SerializeToString()


def limit_of(duration: float, data: int) -> pb.Limit:
    """The Limit a relay announces (0 = none, as the spec says)."""
    return pb.Limit(duration=int(duration), data=int(data))
