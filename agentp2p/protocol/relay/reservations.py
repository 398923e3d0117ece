"""The relay's books: who holds a reservation, and which circuits run.

Sans-IO (the caller passes the time). Everything a relay grants is
counted here before it is granted, so a client cannot take more than its
share however it asks:

* a reservation belongs to the peer whose *connection* asked (never to a
  peer ID named in a message); a refresh replaces the peer's own;
* at most ``max_reservations`` in all and ``max_reservations_per_ip`` per
  IP address of the reserving connection;
* a reservation ends at its expiry or when its peer disconnects (the
  spec: valid only while the peer stays connected);
* at most ``max_circuits`` circuits in all and ``max_circuits_per_peer``
  per peer, counted at both ends, and ``max_circuits_per_ip`` from one
  source address (fresh peer IDs are free; addresses are not);
* an IPv6 address counts as its /64: one host usually holds the whole
  prefix, so per-address bounds would be no bounds.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

from .config import RelayConfig

__all__ = ["Books", "Refused", "Reservation"]


def ip_key(ip: str | None) -> str | None:
    """What per-IP bounds count: the address, or for IPv6 its /64."""
    if ip is None:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class Refused(Exception):
    """The relay will not grant this; ``status`` is the spec's reason code."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Reservation:
    peer: object
    ip: str | None
    expires: float


class Books:
    """Reservations and circuits of one relay."""

    def __init__(self, config: RelayConfig, *, refused: int, limit_exceeded: int, no_reservation: int) -> None:
        self.config = config
        self._codes = (refused, limit_exceeded, no_reservation)
        self._reservations: dict[object, Reservation] = {}
        self._per_ip: Counter[str] = Counter()
        self._circuits: Counter[object] = Counter()
        self._circuits_per_ip: Counter[str] = Counter()
        self.circuits = 0
        self.stats: Counter[str] = Counter()

    # -- reservations --------------------------------------------------------
    def reserve(self, peer: object, ip: str | None, now: float) -> Reservation:
        """Grant (or renew) ``peer``'s reservation; :class:`Refused` otherwise."""
        self.expire(now)
        ip = ip_key(ip)
        cfg = self.config
        old = self._reservations.get(peer)
        if old is None:
            if len(self._reservations) >= cfg.max_reservations:
                self.stats["refused_full"] += 1
                raise Refused(self._codes[0], "relay full")
            if ip is not None and self._per_ip[ip] >= cfg.max_reservations_per_ip:
                self.stats["refused_ip"] += 1
                raise Refused(self._codes[0], "too many reservations from this address")
        else:
            self._drop(peer)
        r = Reservation(peer, ip, now + cfg.reservation_ttl)
        self._reservations[peer] = r
        if ip is not None:
            self._per_ip[ip] += 1
        self.stats["renewed" if old is not None else "granted"] += 1
        return r

    def holds(self, peer: object, now: float) -> bool:
        r = self._reservations.get(peer)
        if r is None or r.expires <= now:
            return False
        return True

    def disconnected(self, peer: object) -> None:
        """The peer's last connection closed: its reservation ends with it."""
        if peer in self._reservations:
            self._drop(peer)
            self.stats["ended_disconnect"] += 1

    def expire(self, now: float) -> None:
        for peer in [p for p, r in self._reservations.items() if r.expires <= now]:
            self._drop(peer)
            self.stats["expired"] += 1

    def _drop(self, peer: object) -> None:
        r = self._reservations.pop(peer)
        if r.ip is not None:
            self._per_ip[r.ip] -= 1
            if self._per_ip[r.ip] <= 0:
                del self._per_ip[r.ip]

    def peers(self) -> list[object]:
        """Peers holding a reservation or an end of a circuit here."""
        return list(dict.fromkeys([*self._reservations, *self._circuits]))

    @property
    def reservations(self) -> int:
        return len(self._reservations)

    # -- circuits ------------------------------------------------------------
    def open_circuit(self, src: object, dst: object, now: float, src_ip: str | None = None) -> None:
        """Count a circuit from ``src`` (at ``src_ip``) to ``dst``; :class:`Refused` if it may not open.
        The caller must :meth:`close_circuit` with the same arguments."""
        if not self.holds(dst, now):
            self.stats["refused_no_reservation"] += 1
            raise Refused(self._codes[2], "no reservation for the target")
        cfg = self.config
        if self.circuits >= cfg.max_circuits:
            self.stats["refused_circuits"] += 1
            raise Refused(self._codes[1], "too many circuits")
        if self._circuits[src] >= cfg.max_circuits_per_peer or self._circuits[dst] >= cfg.max_circuits_per_peer:
            self.stats["refused_circuits_per_peer"] += 1
            raise Refused(self._codes[1], "too many circuits for this peer")
        key = ip_key(src_ip)
        if key is not None and self._circuits_per_ip[key] >= cfg.max_circuits_per_ip:
            self.stats["refused_circuits_per_ip"] += 1
            raise Refused(self._codes[1], "too many circuits from this address")
        if key is not None:
            self._circuits_per_ip[key] += 1
        self.circuits += 1
        self._circuits[src] += 1
        self._circuits[dst] += 1
        self.stats["circuits_opened"] += 1

    def close_circuit(self, src: object, dst: object, src_ip: str | None = None) -> None:
        key = ip_key(src_ip)
        if key is not None:
            self._circuits_per_ip[key] -= 1
            if self._circuits_per_ip[key] <= 0:
                del self._circuits_per_ip[key]
        self.circuits -= 1
        for p in (src, dst):
            self._circuits[p] -= 1
            if self._circuits[p] <= 0:
                del self._circuits[p]
