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


@dataclass(frozen=True)
class Peer:
    peer_id: str
    connections: list[Connection]
    # Filled by Client.peer() (identify); empty in listings.
    agent_version: str | None = None
    protocols: list[str] = field(default_factory=list)
    listen_addrs: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Peer:
        conns = [Connection(c.get("direction", "unknown"), list(c.get("remote_addrs", []))) for c in d.get("connections", [])]
        return cls(
            peer_id=d["peer_id"],
            connections=conns,
            agent_version=d.get("agent_version"),
            protocols=list(d.get("protocols", [])),
            listen_addrs=list(d.get("listen_addrs", [])),
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


def encode_payload(data: bytes | str, text_key: str, b64_key: str) -> dict[str, str]:
    """Text goes as text (readable in logs and curl); bytes as base64."""
    if isinstance(data, str):
        return {text_key: data}
    return {b64_key: base64.b64encode(bytes(data)).decode("ascii")}
