"""Token buckets per peer: how many of something a peer may make us do per second.

Used wherever a peer's input turns into work on a path of ours — SWIM
frames, gossipsub messages, inbound streams — so a flooding peer costs a
dict lookup per excess item, not a decode. Sans-IO: the caller passes the
time. The table is bounded (the least recently seen peer is forgotten
first), so rotating identities cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class PeerRateLimiter:
    """Token bucket per peer: ``allow(peer, now)`` spends one token or says no."""

    __slots__ = ("rate", "burst", "max_peers", "_buckets")

    def __init__(self, rate: float, burst: float, max_peers: int = 4096) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_peers = max_peers
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()  # peer -> [tokens, last]

    def allow(self, peer: Hashable, now: float) -> bool:
        b = self._buckets.get(peer)
        if b is None:
            if len(self._buckets) >= self.max_peers:
                self._buckets.popitem(last=False)
            b = self._buckets[peer] = [self.burst, now]
        else:
            self._buckets.move_to_end(peer)
            b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
            b[1] = now
        if b[0] >= 1.0:
            b[0] -= 1.0
            return True
        return False

    def forget(self, peer: Hashable) -> None:
        """Start ``peer`` afresh (a full bucket): what it spent was not held against it."""
        self._buckets.pop(peer, None)

    def __len__(self) -> int:
        return len(self._buckets)
