"""AutoNAT knobs (``[autonat]`` in the node's config, ``AGENTP2P_AUTONAT__*``).

Defaults follow go-libp2p's AutoNAT v1 where it has one: a dial-back
times out after 15 s, a server dials back for 30 requests a minute in all
and one per peer per 90 s, a verdict is re-checked every 15 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentp2p.errors import ConfigError


@dataclass(frozen=True, slots=True)
class AutoNATConfig:
    """What AutoNAT does on a node: ask peers to dial us back (client), and
    dial back peers that ask us (server)."""

    #: Ask peers whether we are reachable (and act on the answer).
    client: bool = True
    #: Dial back peers that ask us. Only a reachable node's answers are
    #: worth much, but a node behind a NAT answers too: its dial-back to a
    #: public address works as well as anyone's.
    server: bool = True
    #: Answers from this many distinct peers, agreeing, make a verdict
    #: (the spec says "more than 3"; go-libp2p flips after fewer once it
    #: has one). A single liar cannot move it alone.
    confirmations: int = 3
    #: First question this long after a server peer is known (identify has
    #: run, listeners are up).
    boot_delay: float = 5.0
    #: While the verdict is unknown: a round of questions this often.
    retry_interval: float = 30.0
    #: Once decided: re-check this often (addresses and NATs change). Also
    #: the longest wait between rounds while unknown: each round in a row
    #: that asked and got no definite answer (every server asked refused or
    #: did not answer) doubles ``retry_interval`` up to this.
    refresh_interval: float = 15 * 60.0
    #: Servers a round may ask in place of those that refuse or do not
    #: answer, beyond the answers it wants. Bounded so that a node whose
    #: servers all refuse (a private address, servers without
    #: ``allow_private``) does not ask every connected server in turn.
    spare_asks: int = 3
    #: An answer counts toward the verdict for this long.
    answer_ttl: float = 60 * 60.0
    #: The same peer is asked at most once per this long.
    peer_interval: float = 90.0
    #: One question (stream open, request, the peer's dial-back, answer).
    request_timeout: float = 30.0
    #: Server: one dial-back (TCP connect and the security handshake).
    dial_timeout: float = 15.0
    #: Server: dial-backs in all per minute, and per peer per ``peer_interval``.
    max_dials_per_minute: int = 30
    #: Server: dial-backs running at once.
    max_concurrent_dials: int = 4
    #: Server: addresses tried per request (the rest are ignored).
    max_addrs_per_request: int = 8
    #: Server: dial back private, loopback and link-local addresses too. Off
    #: on the internet (a verdict from a LAN dial says nothing of reachability
    #: from outside); tests on 127.0.0.1 and private clusters turn it on.
    allow_private: bool = False

    def __post_init__(self) -> None:
        if self.confirmations < 1:
            raise ConfigError("autonat.confirmations must be >= 1")
        if self.spare_asks < 0:
            raise ConfigError("autonat.spare_asks must be >= 0")
        for name in ("boot_delay", "retry_interval", "refresh_interval", "answer_ttl", "peer_interval",
                     "request_timeout", "dial_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"autonat.{name} must be positive")
        if min(self.max_dials_per_minute, self.max_concurrent_dials, self.max_addrs_per_request) < 1:
            raise ConfigError("autonat.max_dials_per_minute, max_concurrent_dials and max_addrs_per_request "
                              "must be >= 1")
        if self.dial_timeout >= self.request_timeout:
            raise ConfigError("autonat.dial_timeout must be below request_timeout (the asker waits for it)")
