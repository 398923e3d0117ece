"""The decoded pubsub RPC as immutable values (what the core reads and writes).

The core never touches protobuf objects: codec.py turns bytes into these
(checking every bound) and back. Optional protobuf fields are ``None`` when
absent, because absence is meaningful (StrictNoSign requires it, and the
signature covers exactly the fields present).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PeerId = bytes
MsgId = bytes


@dataclass(frozen=True, slots=True)
class SubOpts:
    subscribe: bool
    topic: str


@dataclass(frozen=True, slots=True)
class Message:
    """A pubsub message. ``from_`` is the author (not whoever forwarded it)."""

    topic: str
    data: bytes = b""
    from_: bytes | None = None
    seqno: bytes | None = None
    signature: bytes | None = None
    key: bytes | None = None

    @property
    def size(self) -> int:
        """Payload size: what the IDONTWANT threshold is compared with."""
        return len(self.data)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    peer_id: PeerId
    signed_peer_record: bytes = b""


@dataclass(frozen=True, slots=True)
class IHave:
    topic: str
    ids: tuple[MsgId, ...]


@dataclass(frozen=True, slots=True)
class IWant:
    ids: tuple[MsgId, ...]


@dataclass(frozen=True, slots=True)
class Graft:
    topic: str


@dataclass(frozen=True, slots=True)
class Prune:
    topic: str
    peers: tuple[PeerInfo, ...] = ()
    #: Seconds the pruned peer must wait before GRAFTing again (v1.1); None for v1.0.
    backoff: int | None = None


@dataclass(frozen=True, slots=True)
class IDontWant:
    ids: tuple[MsgId, ...]


@dataclass(frozen=True, slots=True)
class Control:
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[IWant, ...] = ()
    graft: tuple[Graft, ...] = ()
    prune: tuple[Prune, ...] = ()
    idontwant: tuple[IDontWant, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ihave or self.iwant or self.graft or self.prune or self.idontwant)


@dataclass(frozen=True, slots=True)
class Rpc:
    subscriptions: tuple[SubOpts, ...] = ()
    publish: tuple[Message, ...] = ()
    control: Control = field(default_factory=Control)

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.publish or self.control)
