"""Encoding between core Messages and swim_pb2 frames, with hard input bounds.

decode() either returns a fully validated Message or raises WireError — one
exception type, so the caller (the core, or an adapter) can count the drop and
move on. Nothing in a frame can make us allocate more than these bounds.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.message import DecodeError

from agentp2p.pb import swim_pb2

from .member import MAX_INCARNATION, State
from .messages import Ack, Message, MemberUpdate, Nack, Ping, PingReq

PROTOCOL_ID: Final = "/agentp2p/swim/1.0.0"

MAX_FRAME_BYTES: Final = 64 * 1024
MAX_PEER_ID_BYTES: Final = 128
MAX_ADDRS: Final = 8
MAX_ADDR_BYTES: Final = 256
MAX_UPDATES: Final = 64
MAX_TIMEOUT_MS: Final = 60_000
#: Ed25519 signatures are exactly this long; anything else is malformed.
SIGNATURE_BYTES: Final = 64


class WireError(ValueError):
    """A frame that is not a valid SWIM message (malformed, oversized, out of range)."""


def encode(msg: Message) -> bytes:
    pb = swim_pb2.SwimMessage(seq=msg.seq, incarnation=msg.incarnation)
    body = msg.body
    if isinstance(body, Ping):
        pb.ping.target = body.target
    elif isinstance(body, PingReq):
        pb.ping_req.target = body.target
        pb.ping_req.target_addrs.extend(body.target_addrs)
        pb.ping_req.timeout_ms = min(MAX_TIMEOUT_MS, max(0, round(body.timeout * 1000)))
    elif isinstance(body, Ack):
        pb.ack.SetInParent()
    elif isinstance(body, Nack):
        pb.nack.SetInParent()
    else:  # pragma: no cover - programming error
        raise TypeError(f"not a SWIM body: {body!r}")
    for u in msg.updates:
        pb.updates.add(
            peer_id=u.peer_id,
            addrs=u.addrs,
            state=int(u.state),
            incarnation=u.incarnation,
            origin=u.origin,
            signature=u.signature,
        )
    return pb.SerializeToString()


def _peer(raw: bytes, what: str, *, optional: bool = False) -> bytes:
    if not raw and optional:
        return b""
    if not 0 < len(raw) <= MAX_PEER_ID_BYTES:
        raise WireError(f"{what}: peer id of {len(raw)} bytes")
    return bytes(raw)


def _addrs(raw: object) -> tuple[bytes, ...]:
    addrs = tuple(bytes(a) for a in raw)  # type: ignore[attr-defined]
    if len(addrs) > MAX_ADDRS or any(not 0 < len(a) <= MAX_ADDR_BYTES for a in addrs):
        raise WireError("address list out of bounds")
    return addrs


def decode(frame: bytes) -> Message:
    if len(frame) > MAX_FRAME_BYTES:
        raise WireError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    pb = swim_pb2.SwimMessage()
    try:
        pb.ParseFromString(frame)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise WireError(f"undecodable frame: {exc}") from None
    if pb.incarnation > MAX_INCARNATION:
        raise WireError("sender incarnation out of range")
    kind = pb.WhichOneof("body")
    body: Ping | PingReq | Ack | Nack
    if kind == "ping":
        body = Ping(_peer(pb.ping.target, "ping target", optional=True))
    elif kind == "ping_req":
        body = PingReq(
            _peer(pb.ping_req.target, "ping-req target"),
            _addrs(pb.ping_req.target_addrs),
            min(pb.ping_req.timeout_ms, MAX_TIMEOUT_MS) / 1000.0,
        )
    elif kind == "ack":
        body = Ack()
    elif kind == "nack":
        body = Nack()
    else:
        raise WireError("frame has no body")
    if len(pb.updates) > MAX_UPDATES:
        raise WireError(f"{len(pb.updates)} updates exceed {MAX_UPDATES}")
    updates = []
    for u in pb.updates:
        if u.state not in (1, 2, 3, 4):
            raise WireError(f"invalid member state {u.state}")
        # Accusations stay strictly below the cap so that the accused can
        # always refute with incarnation + 1 <= MAX_INCARNATION.
        if u.incarnation > MAX_INCARNATION or (u.state != 1 and u.incarnation >= MAX_INCARNATION):
            raise WireError("incarnation out of range")
        if u.signature and len(u.signature) != SIGNATURE_BYTES:
            raise WireError(f"signature of {len(u.signature)} bytes")
        updates.append(
            MemberUpdate(
                _peer(u.peer_id, "update"),
                State(u.state),
                u.incarnation,
                _addrs(u.addrs),
                _peer(u.origin, "origin", optional=True),
                bytes(u.signature),
            )
        )
    return Message(pb.seq, pb.incarnation, body, tuple(updates))


def update_size(u: MemberUpdate) -> int:
    """Upper-bound estimate of an update's encoded size (for piggyback budgeting)."""
    return 16 + len(u.peer_id) + len(u.origin) + sum(len(a) + 2 for a in u.addrs) + (
        len(u.signature) + 2 if u.signature else 0
    )
