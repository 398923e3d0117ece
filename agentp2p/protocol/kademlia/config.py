"""KademliaConfig: the knobs of the sans-IO Kademlia core, and their bounds.

Defaults follow libp2p/specs kad-dht/README.md and go-libp2p-kad-dht where the
spec is silent (k = 20, alpha = 3, provider records kept 48 h and republished
every 22 h, records kept 36 h). Every collection the core keeps has a cap
here, so no peer — and no amount of peers — can grow it without bound.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

#: Our own DHT: agentp2p nodes only (keeps our records out of the IPFS DHT).
PROTOCOL_ID: Final = "/agentp2p/kad/1.0.0"
#: The public IPFS DHT, for nodes that opt in to it.
IPFS_PROTOCOL_ID: Final = "/ipfs/kad/1.0.0"


class Mode(enum.Enum):
    """Server: answers requests and may be in others' routing tables.
    Client: only asks (behind NAT, short-lived, or resource-poor nodes)."""

    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class KademliaConfig:
    k: int = 20  # bucket size, and how many closest peers a lookup settles on
    alpha: int = 3  # requests in flight per lookup path
    replication: int = 20  # peers a PUT_VALUE / ADD_PROVIDER goes to
    disjoint_paths: int = 1  # S/Kademlia d; 1 = a plain Kademlia lookup
    mode: Mode = Mode.SERVER
    protocol_id: str = PROTOCOL_ID

    request_timeout: float = 10.0  # one request to one peer
    #: A lookup request unanswered this long is overdue; once all α a path
    #: holds are, they stop holding its slots: the next candidates are asked
    #: beside them, and a late answer still counts (libtorrent's "short
    #: timeout"). Starved or far peers then slow a
    #: lookup by this much, not by the request timeout (unless it is among
    #: the k closest: the termination rule still waits for those). 0 (the
    #: default) turns it off; None: learned from how long this node's
    #: answered lookup requests take, at least ``slow_floor``
    #: (slow_timer.py); a number fixes it. The node's ``dht.slow_after`` sets
    #: it ("auto" for None).
    slow_after: float | None = 0.0
    slow_floor: float = 0.5
    #: Slow requests a lookup path keeps awaited beside its α in flight;
    #: None: 3α (in a network cut in two, six candidates in a row across the
    #: cut are not rare, and α more would stall the lookup till their timeouts).
    max_slow: int | None = None
    lookup_timeout: float = 60.0  # a whole query, whatever its peers do
    ping_timeout: float = 10.0  # the liveness check before an eviction
    #: Liveness checks this node sends at most: ``ping_rate`` per second,
    #: ``ping_burst`` at once (a token bucket). Connections from servers not
    #: in the table arrive faster the larger the network (and each check's
    #: own connection makes the pinged peer check one of its entries), so
    #: without a budget the checks' dials per node grow with N. A check not
    #: sent leaves the newcomer in the replacement cache, where a failed
    #: request's eviction promotes it.
    ping_rate: float = 0.1
    ping_burst: int = 5
    refresh_interval: float = 600.0  # a bucket untouched this long is looked up
    refresh_check_interval: float = 60.0
    #: Each bucket's next refresh falls due ``refresh_interval`` after its
    #: last lookup, moved at random by up to this share of it either way
    #: (±150 s at the defaults): buckets looked up together (a Bootstrap's
    #: every-bucket lookup; a node's whole table counts as fresh from its
    #: start) and nodes that joined together then fall due over several
    #: checks instead of one, at about the same rate.
    refresh_jitter: float = 0.25
    #: Refresh lookups one periodic check starts at most (the stalest
    #: buckets first; the rest wait for the next check). A Bootstrap's
    #: lookup in every bucket is not capped.
    max_refreshes_per_check: int = 2
    max_refresh_cpl: int = 15  # deeper buckets are (almost) always empty
    record_ttl: float = 36 * 3600.0
    provider_ttl: float = 48 * 3600.0
    provider_republish: float = 22 * 3600.0
    cleanup_interval: float = 3600.0  # expired records/providers swept (read paths filter anyway)
    max_failures: int = 2  # consecutive failed requests before a table entry goes
    #: Every this many seconds, one peer the table dropped for failures is
    #: pinged again (lost.py: how the DHT re-knits after a partition heals);
    #: 0 turns it off.
    reconnect_interval: float = 10.0
    lost_forget_after: float = 3600.0  # a lost peer is tried again for this long

    # ------------------------------------------------------------ bounds
    replacement_cache: int = 20  # per bucket: candidates waiting for a slot
    max_candidates: int = 100  # per lookup path: the closest peers kept, others dropped
    max_closer_per_response: int = 20  # closer peers one response may add to a lookup
    max_queries: int = 64  # queries running at once (ours plus refresh/republish)
    max_connected: int = 10_000  # peers whose connection state we track
    max_addrs: int = 16  # addresses kept per peer
    max_records: int = 10_000
    max_providers_keys: int = 10_000
    max_providers_per_key: int = 64
    max_providers_returned: int = 20  # in one GET_PROVIDERS answer
    max_local_provides: int = 10_000  # keys we provide (republished)
    max_pending_requests: int = 4096  # outbound requests awaiting an answer
    max_lost: int = 64  # peers dropped for failures that are tried again (the longest lost go first)

    def __post_init__(self) -> None:
        for name in ("k", "alpha", "replication", "disjoint_paths", "replacement_cache", "max_candidates",
                     "max_closer_per_response", "max_queries", "max_addrs", "max_pending_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_candidates < self.k:
            raise ValueError("max_candidates must be at least k")
        for name in ("request_timeout", "lookup_timeout", "ping_timeout", "refresh_interval",
                     "refresh_check_interval", "record_ttl", "provider_ttl", "provider_republish",
                     "cleanup_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.refresh_jitter < 1 or self.max_refreshes_per_check < 1:
            raise ValueError("refresh_jitter must be in [0, 1) and max_refreshes_per_check at least 1")
        if not 0 < self.ping_rate < math.inf or self.ping_burst < 1:
            raise ValueError("ping_rate must be positive and ping_burst at least 1")
        if self.slow_after is not None and not 0 <= self.slow_after < math.inf:
            raise ValueError("slow_after must be None (learned), 0 (off) or positive seconds")
        if not 0 < self.slow_floor < math.inf or (self.max_slow is not None and self.max_slow < 1):
            raise ValueError("slow_floor must be positive and max_slow at least 1")
        if self.reconnect_interval < 0 or self.lost_forget_after <= 0 or self.max_lost < 0:
            raise ValueError("reconnect_interval must be 0 (off) or positive, lost_forget_after positive, "
                             "max_lost not negative")
        if self.provider_republish >= self.provider_ttl:
            raise ValueError("provider_republish must come before provider_ttl expires the record")
