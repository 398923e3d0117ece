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

* connections younger than ``grace`` (a dial that has not been used yet)
  and connections that opened a stream, or carried a DHT request on the
  stream the DHT reuses, within ``idle`` seconds (in use now) — unless
  there are so many of them that the node would stay above
  ``high_water``: then the least recently used of them go too;
* protected peers: what a service must keep (the gossipsub mesh, a
  messaging peer with messages in flight, the members SWIM probes now or
  next, the one whose probes of us reuse a connection and the members SWIM
  has held longest), asked of each
  protector at every round rather than tagged, so nothing can forget to
  untag — at most half of ``low_water`` of them, so protection cannot fill
  the node either.

A round runs every ``interval``, and also at once when an inbound connection
is refused for lack of room (``pressed``; at most one per
``pressure_interval``). In a join storm the bootstrap nodes fill within a
second, and a newcomer refused retries after a back-off that doubles to
30 s: in the whole-node simulator, 2,000 nodes joining in 12 s through 4
bootstrap nodes, the P99 join was 33 s with rounds every 5 s alone (to the
first bootstrap connection: 29 s) and 11 s with them (1.9 s).

A closed peer loses nothing it cannot get back: SWIM and the DHT redial when
they need to, messaging redials and retransmits, gossipsub re-meshes among
the peers left. ``high_water`` below ``max_connections`` keeps room for
newcomers at all times (the config refuses anything else).

:class:`ConnectionManager` only decides (``to_trim(now, connected)``: which
peers to close, no clock or sockets inside); the node runs the round and
closes the connections (``Node._manage_connections``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["ConnectionManager", "ConnectionsConfig", "round_robin"]


def round_robin(lists: list[list[Any]]) -> Iterator[Any]:
    """The first of each list, then the second of each, ..."""
    for k in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if k < len(x):
                yield x[k]

Protector = Callable[[], Iterable[Any]]


@dataclass
class ConnectionsConfig:
    """The ``[connections]`` table of the config file."""

    #: Trim idle connections at all (off: connections stay until a peer or a
    #: service closes them, as before; max_connections still refuses).
    enabled: bool = True
    #: Above this many connections, a round closes idle ones ... (0: 64 % of
    #: the connection limit, at most 192: 163 for the default limits, 256
    #: inbound and 300 in all)
    high_water: int = 0
    #: ... until this many are left (0: five sixths of high_water; 135 for
    #: the defaults; go-libp2p's are 160 / 192).
    low_water: int = 0
    #: A connection this young (seconds) is spared while the node can stay
    #: under high water without it (a dial that has not been used yet).
    grace: float = 10.0
    #: A connection that opened a stream (or carried a DHT request) within this many seconds is in use.
    idle: float = 10.0
    #: Seconds between rounds.
    interval: float = 5.0
    #: ... and an extra round as soon as an inbound connection is refused for
    #: lack of room, at most once per this many seconds (0: never; else at
    #: least 0.1). It closes idle connections and young inbound ones, never an
    #: established one in use nor the node's own fresh dial (see to_trim,
    #: ``pressed``).
    pressure_interval: float = 1.0

    def validate(self) -> None:
        from agentp2p.errors import ConfigError

        if self.low_water < 0 or self.high_water < 0 or (self.high_water and self.low_water >= self.high_water):
            raise ConfigError("connections must satisfy 0 <= low_water < high_water")
        if self.grace < 0 or self.idle < 0 or self.interval <= 0:
            raise ConfigError("connections.grace and idle must be >= 0, interval > 0")
        if self.pressure_interval != 0 and not self.pressure_interval >= 0.1:
            raise ConfigError("connections.pressure_interval must be 0 (off) or at least 0.1 s")

    def marks(self, max_connections: int) -> tuple[int, int]:
        """(low, high) for a node refusing inbound connections past ``max_connections``."""
        high = self.high_water or max(2, min(192, max_connections * 64 // 100))
        low = self.low_water or max(1, high * 5 // 6)
        return min(low, high - 1), high


@dataclass
class _Seen:
    since: float
    used: float
    #: The peer dialed us (True), we dialed it (False), or not known (None).
    inbound: bool | None = None


class ConnectionManager:
    """Which connections to close, from when each opened and was last used (a stream opened, a DHT request)."""

    def __init__(self, config: ConnectionsConfig, max_connections: int) -> None:
        self.config = config
        self.low_water, self.high_water = config.marks(max_connections)
        #: Below 3 connections there is no room to trim into: the manager stays off.
        self._room = max_connections >= 3
        self._peers: dict[Hashable, _Seen] = {}
        self._protectors: list[Protector] = []
        self.trimmed = 0  # connections closed by a round
        self.rounds = 0  # rounds that closed something
        self.pressure_rounds = 0  # rounds asked for by a refused inbound connection (pressed)
        self._pressed_at = -float("inf")

    @property
    def active(self) -> bool:
        """Enabled, with room to trim into."""
        return self.config.enabled and self._room

    def add_protector(self, protector: Protector) -> None:
        """``protector()`` names peers whose connections must stay; asked at every round."""
        self._protectors.append(protector)

    def connected(self, peer: Hashable, now: float, inbound: bool | None = None) -> None:
        """A connection to ``peer`` opened; ``inbound``: the peer dialed us (None:
        not known, treated as inbound by a round on refusal)."""
        # A fresh entry even if one is left over (a peer that redialed before
        # its close was reported, or a dropped event): it gets its grace.
        self._peers[peer] = _Seen(now, now, inbound)

    def disconnected(self, peer: Hashable) -> None:
        self._peers.pop(peer, None)

    def used(self, peer: Hashable, now: float) -> None:
        """A stream opened on the connection, either way, or a request went over one reused."""
        seen = self._peers.get(peer)
        if seen is None:
            self._peers[peer] = _Seen(now, now)
        else:
            seen.used = now

    def pressed(self, now: float) -> bool:
        """An inbound connection was just refused for lack of room: True if a
        round should run now instead of at the next interval, at most once per
        ``pressure_interval``. Such a round (``to_trim(pressed=True)``) closes
        idle connections down to low water and young inbound ones down to high
        water, but no connection past its grace that is in use and none the
        node dialed itself within its grace."""
        gap = self.config.pressure_interval
        if not self.active or gap <= 0 or now - self._pressed_at < gap:
            return False
        self._pressed_at = now
        self.pressure_rounds += 1
        return True

    def protected(self, connected: Collection[Hashable] | None = None) -> set[Any]:
        """The peers the protectors name, at most half of low water of them,
        taken round-robin across protectors so each gets its share:
        protection must never fill the node, or the inbound limit would
        refuse newcomers again. Given ``connected``, names of peers we hold
        no connection to (a dial SWIM is waiting for) take no share."""
        cap = max(1, self.low_water // 2)
        out: set[Any] = set()
        for peer in round_robin([list(p()) for p in self._protectors]):
            if len(out) >= cap:
                break
            if connected is None or peer in connected:
                out.add(peer)
        return out

    def to_trim(self, now: float, connected: Iterable[Hashable], *, pressed: bool = False) -> list[Hashable]:
        """The peers to disconnect now, idle longest first (empty at or below
        high water). ``pressed``: a round brought forward by a refusal, which
        spares every connection past its grace that is in use: whoever makes
        the node refuse (a peer opening connections at will) must not get the
        node's established connections cycled faster than every interval.
        Young inbound ones it may close, down to high water as any round does:
        in a join storm they are the newcomers a bootstrap node is full of. The
        node's own young dials it spares too: a request about to go out on one
        is the node's own work, and the refusal came from someone dialing in."""
        cfg = self.config
        live = list(connected)
        # Forget peers that went away without an event reaching us (bounded by
        # the connections we hold).
        if len(self._peers) > len(live):
            keep = set(live)
            for peer in [p for p in self._peers if p not in keep]:
                del self._peers[peer]
        if not self.active or len(live) <= self.high_water:
            return []
        spared = self.protected(set(live))
        young, busy = now - cfg.grace, now - cfg.idle
        idle, recent = [], []
        for peer in live:
            seen = self._peers.get(peer)
            if seen is None:
                seen = self._peers[peer] = _Seen(now, now)  # first seen now: in its grace period
            if peer in spared:
                continue
            if seen.since > young or seen.used > busy:
                if not pressed or (seen.since > young and seen.inbound is not False):
                    recent.append((seen.used, seen.since, peer))
            else:
                idle.append((seen.used, seen.since, peer))
        idle.sort(key=lambda c: (c[0], c[1]))
        out = [c[2] for c in idle[: len(live) - self.low_water]]
        # Young and busy connections are spared only while the node can stay
        # under high water without them: otherwise a stream of new dials (SWIM
        # probes, a peer opening a stream every few seconds) would keep the
        # node full. The least recently used of them go, down to high water.
        over = len(live) - len(out) - self.high_water
        if over > 0:
            recent.sort(key=lambda c: (c[0], c[1]))
            out += [c[2] for c in recent[:over]]
        if out:
            self.trimmed += len(out)
            self.rounds += 1
        return out

    def stats(self) -> dict[str, Any]:
        return {"enabled": self.active, "low_water": self.low_water, "high_water": self.high_water,
                "trimmed": self.trimmed, "rounds": self.rounds, "pressure_rounds": self.pressure_rounds}
