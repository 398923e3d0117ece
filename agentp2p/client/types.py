"""What the client returns: plain dataclasses built from the API's JSON."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeInfo:
    peer_id: str
    addrs: list[str]
    listen_addrs: list[str]
    agent_version: str
    version: str
    protocols: list[str] = field(default_factory=list)
    uptime_s: float = 0.0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeInfo:
        return cls(
            peer_id=d["peer_id"],
            addrs=list(d.get("addrs", [])),
            listen_addrs=list(d.get("listen_addrs", [])),
            agent_version=d.get("agent_version", ""),
            version=d.get("version", ""),
            protocols=list(d.get("protocols", [])),
            uptime_s=float(d.get("uptime_s", 0.0)),
        )


@dataclass(frozen=True)
class Connection:
    direction: str
    remote_addrs: list[str]
    #: Through a circuit relay (False from daemons before #17's hole punching).
    relayed: bool = False


@dataclass(frozen=True)
class BannedPeer:
    """A peer the daemon refuses for now (penalty box)."""

    peer_id: str
    remaining_s: float
    reason: str
    offences: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BannedPeer:
        return cls(str(d["peer_id"]), float(d["remaining_s"]), str(d["reason"]), int(d["offences"]))


@dataclass(frozen=True)
class Peer:
    peer_id: str
    connections: list[Connection]
    # Filled by Client.peer() (identify); empty in listings.
    agent_version: str | None = None
    protocols: list[str] = field(default_factory=list)
    listen_addrs: list[str] = field(default_factory=list)
    # The daemon's trust in it (None from daemons before trust scores).
    trust_score: float | None = None
    trust_level: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Peer:
        conns = [Connection(c.get("direction", "unknown"), list(c.get("remote_addrs", [])), bool(c.get("relayed", False)))
                 for c in d.get("connections", [])]
        trust = d.get("trust") or {}
        return cls(
            peer_id=d["peer_id"],
            connections=conns,
            agent_version=d.get("agent_version"),
            protocols=list(d.get("protocols", [])),
            listen_addrs=list(d.get("listen_addrs", [])),
            trust_score=trust.get("score"),
            trust_level=trust.get("level"),
        )


@dataclass(frozen=True)
class PeerAddrs:
    peer_id: str
    addrs: list[str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PeerAddrs:
        return cls(d["peer_id"], list(d.get("addrs", [])))


@dataclass(frozen=True)
class Message:
    """A pub/sub message. ``sender`` is the verified author's peer ID."""

    topic: str
    data: bytes
    sender: str
    seqno: str

    @property
    def text(self) -> str:
        """The payload as UTF-8 text (raises UnicodeDecodeError if it is not)."""
        return self.data.decode("utf-8")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Message:
        return cls(d["topic"], base64.b64decode(d["data_b64"]), d["sender"], d.get("seqno", ""))


@dataclass(frozen=True)
class TopicPeers:
    """A topic as the daemon's gossipsub router sees it (``GET /v1/pubsub/peers``).

    ``peers``: every peer known to subscribe to the topic; ``mesh``: those the
    daemon exchanges full messages with (empty unless ``subscribed``);
    ``scores``: peer ID -> gossipsub score, for every peer of either list (all
    0.0 when ``scoring`` is off). A topic nobody announced has empty lists.
    """

    topic: str
    subscribed: bool
    scoring: bool
    peers: list[str]
    mesh: list[str]
    scores: dict[str, float]

    @property
    def others(self) -> list[str]:
        """Subscribed peers outside the mesh (they only get gossip from the daemon)."""
        mesh = set(self.mesh)
        return [p for p in self.peers if p not in mesh]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TopicPeers:
        return cls(
            topic=d["topic"],
            subscribed=bool(d.get("subscribed", False)),
            scoring=bool(d.get("scoring", False)),
            peers=[str(p) for p in d["peers"]],
            mesh=[str(p) for p in d.get("mesh", [])],
            scores={str(k): float(v) for k, v in d.get("scores", {}).items()},
        )


@dataclass(frozen=True)
class SendReceipt:
    """What the receiving daemon confirmed about a direct message we sent.

    ``receipt`` is the last receipt that came: ``"stored"`` (its durable
    inbox has the message and answers for it from now on, across its
    restarts) or ``"consumed"`` (its application acknowledged it).
    ``stored_after``/``consumed_after``: seconds from the send to each
    receipt, None for one that did not come (a send that waits for *stored*
    does not wait for consumption). A peer without a durable inbox gives
    only the consumed receipt, which stands for both.
    """

    id: str
    peer_id: str
    receipt: str
    stored_after: float | None = None
    consumed_after: float | None = None

    @property
    def consumed(self) -> bool:
        return self.receipt == "consumed"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SendReceipt:
        def seconds(value: Any) -> float | None:
            return None if value is None else float(value)

        return cls(
            id=str(d["id"]),
            peer_id=str(d.get("peer_id", "")),
            # A daemon from before receipts answered only once consumed.
            receipt=str(d.get("receipt", "consumed")),
            stored_after=seconds(d.get("stored_after")),
            consumed_after=seconds(d.get("consumed_after")),
        )


@dataclass(frozen=True)
class DirectMessage:
    """A direct message (or, with ``request_id``, a request to answer).

    ``sender`` is the verified sender's peer ID; ``sealed`` says whether the
    payload was end-to-end encrypted to this node.
    """

    id: str
    sender: str
    type: str
    data: bytes
    timestamp: float
    sealed: bool
    request_id: str | None = None

    @property
    def text(self) -> str:
        """The payload as UTF-8 text (raises UnicodeDecodeError if it is not)."""
        return self.data.decode("utf-8")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DirectMessage:
        return cls(
            id=d["id"],
            sender=d["sender"],
            type=d.get("type", ""),
            data=base64.b64decode(d["data_b64"]),
            timestamp=float(d.get("timestamp", 0.0)),
            sealed=bool(d.get("sealed", False)),
            request_id=d.get("request_id"),
        )


@dataclass(frozen=True)
class Member:
    """A SWIM member as the daemon sees it; ``state``: alive, suspect, dead or left."""

    peer_id: str
    state: str
    incarnation: int
    addrs: list[str]
    since_s: float = 0.0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Member:
        return cls(d["peer_id"], d["state"], int(d["incarnation"]), list(d.get("addrs", [])), float(d.get("since_s", 0.0)))


@dataclass(frozen=True)
class MemberEvent:
    """A membership change: ``kind`` is joined, suspect, failed, left or recovered."""

    kind: str
    peer_id: str
    incarnation: int
    previous: str | None
    addrs: list[str]

    @classmethod
    def from_json(cls, kind: str, d: dict[str, Any]) -> MemberEvent:
        return cls(kind, d["peer_id"], int(d["incarnation"]), d.get("previous"), list(d.get("addrs", [])))


@dataclass(frozen=True)
class Record:
    """An agent's capability record (verified by the daemon), with its A2A Agent Card if asked for.

    ``capabilities`` are plain dicts: name, version, title, description,
    tags, examples, input_modes, output_modes, input_schema, output_schema, extra.
    """

    peer_id: str
    name: str
    description: str
    addrs: list[str]
    capabilities: list[dict[str, Any]]
    metadata: dict[str, str]
    seq: int
    issued_at_ms: int
    expires_at_ms: int
    card: dict[str, Any] | None = None

    def capability(self, name: str) -> dict[str, Any] | None:
        return next((c for c in self.capabilities if c.get("name") == name), None)

    @classmethod
    def from_json(cls, d: dict[str, Any], card: dict[str, Any] | None = None) -> Record:
        return cls(
            peer_id=d["peer_id"],
            name=d["name"],
            description=d.get("description", ""),
            addrs=list(d.get("addrs", [])),
            capabilities=list(d.get("capabilities", [])),
            metadata=dict(d.get("metadata", {})),
            seq=int(d["seq"]),
            issued_at_ms=int(d["issued_at_ms"]),
            expires_at_ms=int(d["expires_at_ms"]),
            card=card,
        )

    @classmethod
    def from_answer(cls, d: dict[str, Any]) -> Record:
        """From ``{"record": ..., "card": ...}``."""
        return cls.from_json(d["record"], d.get("card"))


@dataclass(frozen=True)
class Agent:
    """One result of ``find_agents``: who, how alive, how close, and the capability that matched."""

    peer_id: str
    name: str
    liveness: str
    rtt_ms: float | None
    capability: dict[str, Any]
    record: Record

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Agent:
        rtt = d.get("rtt_ms")
        return cls(
            peer_id=d["peer_id"],
            name=d.get("name", ""),
            liveness=d.get("liveness", "unknown"),
            rtt_ms=None if rtt is None else float(rtt),
            capability=dict(d["capability"]),
            record=Record.from_json(d["record"], d.get("card")),
        )


def encode_payload(data: bytes | str, text_key: str, b64_key: str) -> dict[str, str]:
    """Text goes as text (readable in logs and curl); bytes as base64."""
    if isinstance(data, str):
        return {text_key: data}
    return {b64_key: base64.b64encode(bytes(data)).decode("ascii")}
