"""The resource manager: how much any peer can make this node hold.

In the spirit of go-libp2p's resource manager, but small: every place where
a peer's bytes or requests turn into state on our side asks here first, and
a refusal is a counted, logged (throttled) *limit hit* instead of growth.

Scopes, from outside in:

* **connections** — inbound sockets still in their handshake (the oldest is
  evicted when the table is full, so a flood of silent sockets cannot lock
  honest dialers out), established inbound connections, connections per
  remote IP;
* **streams** — inbound streams per connection and per (peer, protocol);
* **memory** — bytes buffered on a peer's behalf, checked against the
  peer's share, the service's share and the node's total, *before* the
  buffer grows.

Limit hits are reported to ``on_hit(peer, limit)``: the node counts them
against the peer in the penalty box, so a peer that keeps hitting limits
is disconnected and refused for a while.

Sans-IO: no trio, sockets or clock here; the callers own the I/O.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from agentp2p.errors import AgentP2PError
from agentp2p.throttled_log import ThrottledLog

log = logging.getLogger("agentp2p.resources")

MiB = 1 << 20


@dataclass
class ResourceLimits:
    """Limits per scope; the ``[resources]`` table of the config file."""

    #: Inbound sockets still in the Noise/Yamux handshake. When full, the
    #: oldest pending socket is closed to make room (silent sockets age out
    #: first, an honest dialer finishes in milliseconds).
    max_pending_handshakes: int = 64
    #: An inbound socket that has not finished its handshake by then is closed.
    handshake_timeout: float = 10.0
    #: Established inbound connections at once (NodeConfig.max_connections
    #: bounds inbound + outbound).
    max_inbound_connections: int = 256
    #: Pending + established inbound connections from one IP address.
    max_connections_per_ip: int = 32
    #: Loopback addresses are exempt from the per-IP limit unless this is set
    #: (every local test and devnet node dials from 127.0.0.1).
    limit_loopback: bool = False
    #: Inbound streams open at once on one connection.
    max_streams_per_connection: int = 256
    #: Inbound streams of one protocol from one peer open at once.
    max_streams_per_peer_protocol: int = 64
    #: Inbound streams of one protocol one peer may open per second
    #: (sustained; ``stream_open_burst`` at once).
    stream_opens_per_second: float = 50.0
    stream_open_burst: int = 100
    #: Bytes buffered for peers, node-wide.
    max_memory: int = 256 * MiB
    #: Bytes buffered on behalf of one peer, all services together.
    max_memory_per_peer: int = 32 * MiB
    #: Bytes buffered by one service (yamux, pubsub, messaging, dht, ...).
    max_memory_per_service: int = 128 * MiB

    def validate(self) -> None:
        from agentp2p.errors import ConfigError

        for name, value in asdict(self).items():
            if isinstance(value, bool):
                continue
            if value <= 0:
                raise ConfigError(f"resources.{name} must be positive, not {value!r}")
        if self.max_memory_per_peer > self.max_memory:
            raise ConfigError("resources.max_memory_per_peer cannot exceed resources.max_memory")


class LimitExceeded(AgentP2PError):
    """A resource limit refused a reservation; ``limit`` names which one."""

    def __init__(self, limit: str, detail: str = "") -> None:
        super().__init__(f"resource limit {limit} reached" + (f": {detail}" if detail else ""))
        self.limit = limit


HitHook = Callable[[Any, str], None]


class ResourceManager:
    """Accounting for one node. Every method is synchronous and O(1)."""

    def __init__(self, limits: ResourceLimits | None = None, on_hit: HitHook | None = None) -> None:
        self.limits = limits or ResourceLimits()
        self._on_hit = on_hit
        self._on_full: Callable[[], None] | None = None
        self.hits: Counter[str] = Counter()
        self._log = ThrottledLog(log, interval=30.0)
        # connections
        self.pending_handshakes = 0
        self.inbound_connections = 0
        self._per_ip: Counter[str] = Counter()
        # streams
        self._streams_per_peer_protocol: Counter[tuple[Any, str]] = Counter()
        # memory
        self.memory = 0
        self._memory_per_peer: Counter[Any] = Counter()
        self._memory_per_service: Counter[str] = Counter()

    def set_hit_hook(self, on_hit: HitHook | None) -> None:
        self._on_hit = on_hit

    def set_full_hook(self, on_full: Callable[[], None] | None) -> None:
        """``on_full()`` hears of each inbound connection refused for lack of
        room (the node's connection manager then trims early)."""
        self._on_full = on_full

    def refused_for_room(self) -> None:
        """An inbound connection found the node full: our inbound limit, or
        the host's ``max_connections`` (the inbound gate reports that one)."""
        if self._on_full is not None:
            self._on_full()

    # -- reporting ------------------------------------------------------------

    def hit(self, limit: str, peer: Any = None, detail: str = "", blame: bool = True) -> None:
        """Count a limit hit, log it (throttled) and, if ``blame``, tell the hook.

        Only a peer's *own* share being full is its fault; when a node-wide
        or service-wide scope is full, the peer that happened to ask next is
        refused but not blamed.
        """
        self.hits[limit] += 1
        self._log.warning((limit, str(peer)), "limit %s hit (peer %s) %s", limit, peer or "-", detail)
        if blame and self._on_hit is not None and peer is not None:
            self._on_hit(peer, limit)

    # -- connections ----------------------------------------------------------

    def _ip_limited(self, ip: str | None) -> bool:
        if ip is None:
            return False
        if self.limits.limit_loopback:
            return True
        try:
            return not ipaddress.ip_address(ip).is_loopback
        except ValueError:
            return True

    def admit_inbound_socket(self, ip: str | None) -> bool:
        """A new inbound socket from ``ip``: within the per-IP limit?"""
        if self._ip_limited(ip) and self._per_ip[ip or ""] >= self.limits.max_connections_per_ip:
            self.hit("connections_per_ip", None, f"ip {ip}")
            return False
        self._per_ip[ip or ""] += 1
        return True

    def release_inbound_socket(self, ip: str | None) -> None:
        key = ip or ""
        self._per_ip[key] -= 1
        if self._per_ip[key] <= 0:
            del self._per_ip[key]

    def admit_inbound_connection(self, peer: Any) -> bool:
        """A handshake finished: may this inbound connection be kept?"""
        if self.inbound_connections >= self.limits.max_inbound_connections:
            self.hit("inbound_connections", peer, blame=False)
            self.refused_for_room()
            return False
        self.inbound_connections += 1
        return True

    def release_inbound_connection(self) -> None:
        self.inbound_connections = max(0, self.inbound_connections - 1)

    # -- streams --------------------------------------------------------------

    def open_stream(self, peer: Any, protocol: str) -> bool:
        key = (peer, protocol)
        if self._streams_per_peer_protocol[key] >= self.limits.max_streams_per_peer_protocol:
            self.hit("streams_per_peer_protocol", peer, protocol)
            return False
        self._streams_per_peer_protocol[key] += 1
        return True

    def close_stream(self, peer: Any, protocol: str) -> None:
        key = (peer, protocol)
        self._streams_per_peer_protocol[key] -= 1
        if self._streams_per_peer_protocol[key] <= 0:
            del self._streams_per_peer_protocol[key]

    # -- memory ---------------------------------------------------------------

    def reserve_memory(self, peer: Any, service: str, n: int) -> bool:
        """Reserve ``n`` bytes for ``peer`` in ``service``; False (and a hit) if any scope is full."""
        if n <= 0:
            return True
        limits = self.limits
        if self.memory + n > limits.max_memory:
            self.hit("memory", peer, service, blame=False)
            return False
        if peer is not None and self._memory_per_peer[peer] + n > limits.max_memory_per_peer:
            self.hit("memory_per_peer", peer, service)
            return False
        if self._memory_per_service[service] + n > limits.max_memory_per_service:
            self.hit("memory_per_service", peer, service, blame=False)
            return False
        self.memory += n
        if peer is not None:
            self._memory_per_peer[peer] += n
        self._memory_per_service[service] += n
        return True

    def release_memory(self, peer: Any, service: str, n: int) -> None:
        if n <= 0:
            return
        self.memory = max(0, self.memory - n)
        if peer is not None:
            left = self._memory_per_peer[peer] - n
            if left > 0:
                self._memory_per_peer[peer] = left
            else:
                self._memory_per_peer.pop(peer, None)
        left = self._memory_per_service[service] - n
        if left > 0:
            self._memory_per_service[service] = left
        else:
            self._memory_per_service.pop(service, None)

    def reservation(self, peer: Any, service: str) -> Reservation:
        """A growable reservation for one buffer (grow as it fills, shrink as it drains)."""
        return Reservation(self, peer, service)

    def memory_of(self, peer: Any) -> int:
        return self._memory_per_peer.get(peer, 0)

    # -- introspection --------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "limits": asdict(self.limits),
            "hits": dict(self.hits),
            "pending_handshakes": self.pending_handshakes,
            "inbound_connections": self.inbound_connections,
            "memory": self.memory,
            "memory_by_service": dict(self._memory_per_service),
            "peers_holding_memory": len(self._memory_per_peer),
        }


class Reservation:
    """Bytes one buffer holds for one peer; ``close()`` gives them all back."""

    __slots__ = ("_rm", "peer", "service", "size")

    def __init__(self, rm: ResourceManager, peer: Any, service: str) -> None:
        self._rm = rm
        self.peer = peer
        self.service = service
        self.size = 0

    def grow(self, n: int) -> bool:
        if self._rm.reserve_memory(self.peer, self.service, n):
            self.size += n
            return True
        return False

    def shrink(self, n: int) -> None:
        n = min(n, self.size)
        self.size -= n
        self._rm.release_memory(self.peer, self.service, n)

    def close(self) -> None:
        self.shrink(self.size)
