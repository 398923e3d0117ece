"""Hole punching knobs (``[holepunch]`` in the node's config, ``AGENTP2P_HOLEPUNCH__*``).

A node reached through a relay tries to turn that connection into a
direct one (DCUtR, see core.py); a node that dialed through a relay
answers such tries. Both are on by default: a direct connection is
cheaper for everyone, the relay included.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentp2p.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HolePunchConfig:
    """``[holepunch]``: see the module doc and docs/reachability.md."""

    #: Try to upgrade relayed connections that reach us, and answer peers
    #: that try with ours.
    enabled: bool = True
    #: Rounds of CONNECT/SYNC/dial per upgrade (the spec: 3).
    attempts: int = 3
    #: How long one round's dial may take (SYN retransmits: 1 s, then 3 s).
    dial_timeout: float = 5.0
    #: How long the reversal (dialing the peer's public addresses) may take.
    reversal_timeout: float = 5.0
    #: How long a message exchange on the DCUtR stream may take.
    stream_timeout: float = 10.0
    #: How long the relayed connection stays open after the direct one is
    #: up, for the streams that were on it to finish (the spec's "grace period").
    grace: float = 5.0
    #: Upgrades exchanging and dialing at once, each role (each binds
    #: sockets and may dial 8 addresses).
    max_concurrent: int = 8
    #: One upgrade per peer in this long (as B); as A, ``attempts`` rounds
    #: per peer in this long (a peer cannot have us punch at will). Token
    #: buckets: averages, with bursts of the same size.
    retry_after: float = 300.0
    #: Dials (rounds and reversals), all peers together, per minute on
    #: average: each one sends SYNs to addresses a peer named.
    max_rounds_per_minute: int = 60
    #: Punch to private addresses (a LAN, the tests); off on the internet.
    allow_private: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 10:
            raise ConfigError("holepunch.attempts must be between 1 and 10")
        if min(self.dial_timeout, self.reversal_timeout, self.stream_timeout) <= 0 or self.grace < 0:
            raise ConfigError("holepunch timeouts must be positive and grace >= 0")
        if self.max_concurrent < 1 or self.retry_after <= 0 or self.max_rounds_per_minute < 1:
            raise ConfigError("holepunch.max_concurrent and max_rounds_per_minute must be >= 1, "
                              "retry_after positive")
