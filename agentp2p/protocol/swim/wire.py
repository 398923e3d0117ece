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
from .messages import Ack, Gossip, Message, MemberUpdate, Nack, Ping, PingReq, PushPull, Step

PROTOCOL_ID: Final = "/agentp2p/swim/1.0.0"

MAX_FRAME_BYTES: Final = 64 * 1024
MAX_PEER_ID_BYTES: Final = 128
MAX_ADDRS: Final = 8
MAX_ADDR_BYTES: Final = 256
MAX_UPDATES: Final = 64
MAX_TIMEOUT_MS: Final = 60_000
#: Ed25519 signatures are exactly this long; anything else is malformed.
SIGNATURE_BYTES: Final = 64
#: Push/pull (pushpull.py): at most 2^8 buckets, this many entries per frame,
#: this many frames per REPLY or PUSH.
MAX_PUSHPULL_LEVEL: Final = 8
MAX_PUSHPULL_ENTRIES: Final = 128
MAX_PUSHPULL_CHUNKS: Final = 64


class WireError(ValueError):
    """A frame that is not a valid SWIM message (malformed, oversized, out of range)."""


class UnknownBody(WireError):
    """A frame whose body this version does not know (or that has none).

    Ignored whole, counted, but not held against the sender: a newer member
    sends bodies an older one cannot decode, and a rolling upgrade must not
    get the new members banned by the old ones."""


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
    elif isinstance(body, Gossip):
        pb.gossip.SetInParent()
    elif isinstance(body, PushPull):
        pp = pb.push_pull
        pp.step = int(body.step)
        pp.level = body.level
        if body.step is Step.REQUEST:
            pp.digests = b"".join((d & 0xFFFFFFFF).to_bytes(4, "big") for d in body.digests)
        else:
            pp.buckets = bitmap(body.buckets, body.level) if body.buckets else b""
            pp.chunk = body.chunk
            pp.chunks = body.chunks
            pp.busy = body.busy
            for u in body.entries:
                _add_update(pp.entries, u)
    else:  # pragma: no cover - programming error
        raise TypeError(f"not a SWIM body: {body!r}")
    for u in msg.updates:
        _add_update(pb.updates, u)
    return pb.SerializeToString()


def decodable(u: MemberUpdate) -> bool:
    """Would :func:`decode` accept ``u``? An accusation at MAX_INCARNATION would
    not (the accused could not refute it), and one such update would make the
    whole frame undecodable — its ping or ack lost, and its honest sender
    taken for a liar — so the encoder leaves it out. A member alive at the cap
    (a liar, or a member that refuted to it) can then only be judged by each
    node's own probes."""
    return not (u.incarnation > MAX_INCARNATION or (u.state is not State.ALIVE and u.incarnation >= MAX_INCARNATION))


def _add_update(field: object, u: MemberUpdate) -> None:
    if not decodable(u):
        return
    field.add(  # type: ignore[attr-defined]
        peer_id=u.peer_id,
        addrs=u.addrs,
        state=int(u.state),
        incarnation=u.incarnation,
        origin=u.origin,
        signature=u.signature,
    )


def bitmap_bytes(level: int) -> int:
    """Length of the bucket bitmap for 2^level buckets."""
    return max(1, (1 << level) // 8)


def bitmap(buckets: frozenset[int] | set[int], level: int) -> bytes:
    out = bytearray(bitmap_bytes(level))
    for b in buckets:
        out[b >> 3] |= 0x80 >> (b & 7)
    return bytes(out)


def _buckets(raw: bytes, level: int) -> frozenset[int]:
    if not raw:
        return frozenset()
    if len(raw) != bitmap_bytes(level):
        raise WireError(f"bucket bitmap of {len(raw)} bytes for level {level}")
    n = 1 << level
    out = set()
    for i, byte in enumerate(raw):
        if byte:
            for j in range(8):
                if byte & (0x80 >> j):
                    b = i * 8 + j
                    if b >= n:
                        raise WireError("bucket bitmap names a bucket beyond 2^level")
                    out.add(b)
    return frozenset(out)


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
    if not frame:
        raise WireError("empty frame")
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
    body: Ping | PingReq | Ack | Nack | PushPull | Gossip
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
    elif kind == "push_pull":
        body = _push_pull(pb.push_pull)
    elif kind == "gossip":
        body = Gossip()
    else:
        # None we know: a newer peer's body (Gossip and PushPull were added
        # this way), or nothing at all. Not an offence: see UnknownBody.
        raise UnknownBody("frame has no body this version knows")
    if len(pb.updates) > MAX_UPDATES:
        raise WireError(f"{len(pb.updates)} updates exceed {MAX_UPDATES}")
    return Message(pb.seq, pb.incarnation, body, tuple(_update(u) for u in pb.updates))


def _update(u: swim_pb2.MemberUpdate) -> MemberUpdate:
    if u.state not in (1, 2, 3, 4):
        raise WireError(f"invalid member state {u.state}")
    # Accusations stay strictly below the cap so that the accused can
    # always refute with incarnation + 1 <= MAX_INCARNATION.
    if u.incarnation > MAX_INCARNATION or (u.state != 1 and u.incarnation >= MAX_INCARNATION):
        raise WireError("incarnation out of range")
    if u.signature and len(u.signature) != SIGNATURE_BYTES:
        raise WireError(f"signature of {len(u.signature)} bytes")
    return MemberUpdate(
        _peer(u.peer_id, "update"),
        State(u.state),
        u.incarnation,
        _addrs(u.addrs),
        _peer(u.origin, "origin", optional=True),
        bytes(u.signature),
    )


def _push_pull(pp: swim_pb2.PushPull) -> PushPull:
    if pp.step not in (1, 2, 3):
        raise WireError(f"invalid push/pull step {pp.step}")
    step = Step(pp.step)
    level = pp.level
    if level > MAX_PUSHPULL_LEVEL:
        raise WireError(f"push/pull level {level} exceeds {MAX_PUSHPULL_LEVEL}")
    if step is Step.REQUEST:
        raw = pp.digests
        if len(raw) != 4 << level or pp.entries or pp.buckets or pp.busy:
            raise WireError("push/pull request: digests must be 4 bytes per bucket, nothing else")
        digests = tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, len(raw), 4))
        return PushPull(step, level, digests)
    if pp.digests:
        raise WireError("push/pull digests outside a request")
    if not pp.chunk < pp.chunks <= MAX_PUSHPULL_CHUNKS:
        raise WireError(f"push/pull chunk {pp.chunk} of {pp.chunks}")
    if len(pp.entries) > MAX_PUSHPULL_ENTRIES:
        raise WireError(f"{len(pp.entries)} push/pull entries exceed {MAX_PUSHPULL_ENTRIES}")
    if pp.busy and (step is not Step.REPLY or pp.entries):
        raise WireError("busy is a bare reply")
    entries = tuple(_update(u) for u in pp.entries)
    return PushPull(step, level, (), _buckets(pp.buckets, level), pp.chunk, pp.chunks, entries, pp.busy)


def update_size(u: MemberUpdate) -> int:
    """Upper-bound estimate of an update's encoded size (for piggyback budgeting)."""
    return 16 + len(u.peer_id) + len(u.origin) + sum(len(a) + 2 for a in u.addrs) + (
        len(u.signature) + 2 if u.signature else 0
    )


def _vs(v: int) -> int:
    """Bytes of a protobuf varint."""
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def _bytes_field(b: bytes) -> int:
    return 1 + _vs(len(b)) + len(b) if b else 0


def _int_field(v: int) -> int:
    return 1 + _vs(v) if v else 0


def _update_bytes(u: MemberUpdate) -> int:
    # Every length and value here is usually below 128: one-byte varints.
    p = len(u.peer_id)
    n = p + (2 if p < 0x80 else 1 + _vs(p)) + 2  # peer_id, state (1..4)
    inc = u.incarnation
    if inc:
        n += 2 if inc < 0x80 else 1 + _vs(inc)
    o = len(u.origin)
    if o:
        n += o + (2 if o < 0x80 else 1 + _vs(o))
    s = len(u.signature)
    if s:
        n += s + (2 if s < 0x80 else 1 + _vs(s))
    for a in u.addrs:
        la = len(a)
        n += la + (2 if la < 0x80 else 1 + _vs(la))
    return n


def _sub(n: int) -> int:
    """An embedded message of n bytes, as a field (tags of fields 1-15 take one byte)."""
    return n + (2 if n < 0x80 else 1 + _vs(n))


def encoded_update_size(u: MemberUpdate) -> int:
    """The bytes one piggybacked update adds to a frame (0 if the encoder
    leaves it out): :func:`encoded_size` is the bare frame plus these."""
    return _sub(_update_bytes(u)) if decodable(u) else 0


def encoded_size(msg: Message) -> int:
    """``len(encode(msg))``, computed without encoding (the simulator sizes
    every frame it delivers)."""
    body = msg.body
    if isinstance(body, Ping):
        b = _bytes_field(body.target)
    elif isinstance(body, PingReq):
        b = _bytes_field(body.target) + sum(1 + _vs(len(a)) + len(a) for a in body.target_addrs)
        b += _int_field(min(MAX_TIMEOUT_MS, max(0, round(body.timeout * 1000))))
    elif isinstance(body, PushPull):
        b = _int_field(int(body.step)) + _int_field(body.level)
        if body.step is Step.REQUEST:
            b += _bytes_field(b"\0" * (4 * len(body.digests)))
        else:
            b += (1 + _vs(bitmap_bytes(body.level)) + bitmap_bytes(body.level)) if body.buckets else 0
            b += _int_field(body.chunk) + _int_field(body.chunks) + (2 if body.busy else 0)
            b += sum(_sub(_update_bytes(u)) for u in body.entries if decodable(u))
    else:  # Ack, Nack, Gossip: empty
        b = 0
    n = _int_field(msg.seq) + _int_field(msg.incarnation) + _sub(b)
    return n + sum(encoded_update_size(u) for u in msg.updates)
