"""Keep the node's connections between two water marks, as go-libp2p's connmgr does.

Why: nothing closed an idle connection. Each newcomer dials every bootstrap
node; every SWIM probe to a member we were not connected to, every DHT
request to a peer a lookup returned, leaves a connection open for good. So
a node's connections grew with the network until its inbound limit
(``max_connections``, 300) refused every new one. The whole-node simulator
(docs/scale.md) shows what that does at 1,000 nodes: the bootstrap nodes
fill first, and every node started after them is locked out — 304 of 1,000
got in, and no newcomer did.

The rule: when a node holds more than ``high_water`` connections, it closes
the ones idle longest until ``low_water`` remain. Never closed:

* connections younger than ``grace`` (a dial that has not been used yet);
* connections that opened a stream within ``idle`` seconds (in use now);
* protected peers: what a service must keep (the gossipsub mesh, a
  messaging peer with messages in flight), asked of each protector at
  every round rather than tagged, so nothing can forget to untag — at most
  half of ``low_water`` of them, so protection cannot fill the node either.

A closed peer loses nothing it cannot get back: SWIM and the DHT redial when
they need to, messaging redials and retransmits, gossipsub re-meshes among
the peers left. ``high_water`` below ``max_connections`` keeps room for
newcomers at all times (the config refuses anything else).

:class:`ConnectionManager` only decides (``to_trim(now, connected)``: which
peers to close, no clock or sockets inside); the node runs the round and
closes the connections (``Node._manage_connections``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConnectionManager", "ConnectionsConfig"]

Protector = Callable[[], Iterable[Any]]


@dataclass
class ConnectionsConfig:
    """The ``[connections]`` table of the config file."""

    #: Trim idle connections at all (off: connections stay until a peer or a
    #: service closes them, as before; max_connections still refuses).
    enabled: bool = True
    #: Above this many connections, a round closes idle ones ... (0: about
    #: two thirds of max_connections, at most 192: 192 for the default 300)
    high_water: int = 0
    #: ... until this many are left (0: five sixths of high_water; 160 for
    #: the default, go-libp2p's defaults being 160 / 192).
    low_water: int = 0
    #: A connection this young (seconds) is never closed.
    grace: float = 30.0
    #: A connection that opened a stream within this many seconds is in use.
    idle: float = 10.0
    #: Seconds between rounds.
    interval: float = 5.0

    def validate(self) -> None:
        from agentp2p.errors import ConfigError

        if self.low_water < 0 or self.high_water < 0 or (self.high_water and self.low_water >= self.high_water):
            raise ConfigError("connections must satisfy 0 <= low_water < high_water")
        if self.grace < 0 or self.idle < 0 or self.interval <= 0:
            raise ConfigError("connections.grace and idle must be >= 0, interval > 0")

    def marks(self, max_connections: int) -> tuple[int, int]:
        """(low, high) for a node refusing inbound connections past ``max_connections``."""
        high = self.high_water or max(2, min(192, max_connections * 64 // 100))
        low = self.low_water or max(1, high * 5 // 6)
        return min(low, high - 1), high


@dataclass
class _Seen:
    since: float
    used: float


class ConnectionManager:
    """Which connections to close, from when each opened and last opened a stream."""

    def __init__(self, config: ConnectionsConfig, max_connections: int) -> None:
        self.config = config
        self.low_water, self.high_water = config.marks(max_connections)
        self._peers: dict[Hashable, _Seen] = {}
        self._protectors: list[Protector] = []
        self.trimmed = 0  # connections closed by a round
        self.rounds = 0  # rounds that closed something

    def add_protector(self, protector: Protector) -> None:
        """``protector()`` names peers whose connections must stay; asked at every round."""
        self._protectors.append(protector)

    def connected(self, peer: Hashable, now: float) -> None:
        self._peers.setdefault(peer, _Seen(now, now))

    def disconnected(self, peer: Hashable) -> None:
        self._peers.pop(peer, None)

    def used(self, peer: Hashable, now: float) -> None:
        """A stream opened on the connection, either way."""
        seen = self._peers.get(peer)
        if seen is None:
            self._peers[peer] = _Seen(now, now)
        else:
            seen.used = now

    def protected(self) -> set[Any]:
        """The peers the protectors name, at most half of low water of them
        (the first named): protection must never fill the node, or the
        inbound limit would refuse newcomers again."""
        cap = max(1, self.low_water // 2)
        out: set[Any] = set()
        for protector in self._protectors:
            for peer in protector():
                if len(out) >= cap:
                    return out
                out.add(peer)
        return out

    def to_trim(self, now: float, connected: Iterable[Hashable]) -> list[Hashable]:
        """The peers to disconnect now, idle longest first (empty at or below high water)."""
        cfg = self.config
        live = list(connected)
        # Forget peers that went away without an event reaching us (bounded by
        # the connections we hold).
        if len(self._peers) > len(live):
            keep = set(live)
            for peer in [p for p in self._peers if p not in keep]:
                del self._peers[peer]
        if not cfg.enabled or len(live) <= self.high_water:
            return []
        spared = self.protected()
        young, busy = now - cfg.grace, now - cfg.idle
        candidates = []
        for peer in live:
            seen = self._peers.get(peer)
            if seen is None:
                self._peers[peer] = _Seen(now, now)  # first seen now: in its grace period
                continue
            if seen.since > young or seen.used > busy or peer in spared:
                continue
            candidates.append((seen.used, seen.since, peer))
        candidates.sort(key=lambda c: (c[0], c[1]))
        out = [c[2] for c in candidates[: len(live) - self.low_water]]
        if out:
            self.trimmed += len(out)
            self.rounds += 1
        return out

    def stats(self) -> dict[str, Any]:
        c = self.config
        return {"enabled": c.enabled, "low_water": self.low_water, "high_water": self.high_water,
                "trimmed": self.trimmed, "rounds": self.rounds}
