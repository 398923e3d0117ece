"""The SWIM frames as plain Python values (wire.py maps them to swim_pb2).

The core builds and consumes these; it never touches bytes, so the simulator
can skip serialization when it only needs sizes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .member import PeerId, State


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    peer_id: PeerId
    state: State
    incarnation: int
    addrs: tuple[bytes, ...] = ()
    #: For SUSPECT: who suspects (a Lifeguard confirmation source).
    origin: PeerId = b""
    #: For ALIVE/LEFT announced by ``peer_id`` itself: its signature over
    #: signature.signing_bytes(...) (empty: unsigned). Relayed unchanged.
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Ping:
    target: PeerId


@dataclass(frozen=True, slots=True)
class PingReq:
    target: PeerId
    target_addrs: tuple[bytes, ...] = ()
    #: Seconds the helper should wait for target's ack (0 = helper's default).
    timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class Nack:
    pass


@dataclass(frozen=True, slots=True)
class Gossip:
    """Only piggybacked updates, unanswered: news sent between probes (core's gossip timer)."""


class Step(enum.IntEnum):
    """Steps of a push/pull exchange (values match swim.proto's PushPull.Step)."""

    REQUEST = 1
    REPLY = 2
    PUSH = 3


@dataclass(frozen=True, slots=True)
class PushPull:
    """One frame of a push/pull anti-entropy exchange (pushpull.py)."""

    step: Step
    #: 2^level buckets.
    level: int = 0
    #: REQUEST: the sender's bucket digests (32-bit each).
    digests: tuple[int, ...] = ()
    #: REPLY/PUSH: the buckets being exchanged.
    buckets: frozenset[int] = frozenset()
    chunk: int = 0
    chunks: int = 1
    entries: tuple[MemberUpdate, ...] = ()
    #: REPLY: the responder refuses (rate limit); no entries.
    busy: bool = False


Body = Ping | PingReq | Ack | Nack | PushPull | Gossip


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    #: The sender's own incarnation (first-hand: the sender is authenticated).
    incarnation: int
    body: Body
    updates: tuple[MemberUpdate, ...] = field(default=())
