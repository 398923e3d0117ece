"""Circuit relay knobs (``[relay]`` in the node's config, ``AGENTP2P_RELAY__*``).

Two roles. **Service** (the relay): a public node lends a bounded share of
its connections to peers that cannot be dialed. **Client**: a node that
cannot be dialed reserves a slot on a few relays and advertises
``/p2p-circuit`` addresses through them; every node can dial such
addresses.

Defaults: go-libp2p's relay gives 2 min and 128 KiB per circuit, enough
for hole punching and little else. An agent behind a NAT that hole
punching cannot cross lives on its relay, so ours allows more per circuit
(10 min, 4 MiB each way) and fewer of them; an operator sets what their
relay can afford.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentp2p.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """``[relay]``: see the module doc and docs/reachability.md."""

    #: Offer relay service: "auto" (when AutoNAT finds the node public),
    #: "on" or "off".
    service: str = "auto"
    #: Reservations held at once, in all / per IP address of the reserving peers.
    max_reservations: int = 128
    max_reservations_per_ip: int = 8
    #: How long a reservation lasts unless refreshed (and while the peer stays connected).
    reservation_ttl: float = 3600.0
    #: Circuits relayed at once, in all / per peer (as source or as target).
    max_circuits: int = 64
    max_circuits_per_peer: int = 8
    #: ... and from one source address (an IPv6 /64), whatever peer IDs it uses.
    max_circuits_per_ip: int = 16
    #: One circuit's life and bytes, each way; 0: no limit.
    circuit_duration: float = 600.0
    circuit_data: int = 4 << 20
    #: How long the target has to accept a circuit (the stop exchange).
    connect_timeout: float = 10.0

    #: Client: reserve on these relays (multiaddrs ending in /p2p/<id>) ...
    relays: list[str] = field(default_factory=list)
    #: ... and, when AutoNAT finds the node private, on relays among its peers.
    auto_relay: bool = True
    #: Reservations a client keeps.
    reservations: int = 2
    #: Client: accept circuits to us (the stop protocol) ...
    accept_circuits: bool = True
    #: ... at most this many at once, through all our relays (each one is a
    #: Noise handshake and a connection slot a relay's clients can make us spend).
    max_inbound_circuits: int = 32

    def __post_init__(self) -> None:
        if self.service not in ("auto", "on", "off"):
            raise ConfigError(f"relay.service must be 'auto', 'on' or 'off', not {self.service!r}")
        if min(self.max_reservations, self.max_reservations_per_ip, self.max_circuits,
               self.max_circuits_per_peer, self.max_circuits_per_ip, self.reservations) < 1:
            raise ConfigError("relay reservation and circuit counts must be >= 1")
        if self.reservation_ttl < 60 or self.connect_timeout <= 0:
            raise ConfigError("relay.reservation_ttl must be >= 60 s and connect_timeout positive")
        if self.circuit_duration < 0 or self.circuit_data < 0:
            raise ConfigError("relay.circuit_duration and circuit_data must be >= 0 (0: no limit)")
        if self.circuit_duration == 0 and self.circuit_data == 0 and self.service != "off":
            raise ConfigError("relay.circuit_duration and circuit_data cannot both be 0: "
                              "a circuit would hold its slot for ever")
        if self.max_inbound_circuits < 1:
            raise ConfigError("relay.max_inbound_circuits must be >= 1")
        from agentp2p.network.addresses import parse_peer_addr

        for addr in self.relays:
            parse_peer_addr(addr)
