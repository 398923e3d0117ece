"""Per-peer inbound frame budget and log throttling for the SWIM adapter.

A SWIM member sends us a handful of frames per protocol period (a ping, an
ack, sometimes a ping-req/nack or a burst of queued frames after a slow
stream open). A peer that sends far more is flooding: each frame costs us a
protobuf decode and up to 64 updates' worth of work. So every peer gets a
token bucket (``rate`` frames/s, ``burst`` at once); frames beyond it are
dropped like lost datagrams (SWIM copes with loss) and counted.

Logging is throttled the same way: at most one line per peer per
``interval``, carrying how many events it stands for, so a flood of bad
frames cannot flood the log.

Both tables are bounded (``max_peers``; the least recently seen peer is
forgotten first). Time is passed in by the caller: nothing here reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict

from agentp2p.network.ratelimit import PeerRateLimiter

__all__ = ["LogThrottle", "PeerRateLimiter"]


class LogThrottle:
    """At most one report per peer per ``interval``; counts what it held back."""

    __slots__ = ("interval", "max_peers", "_peers", "suppressed")

    def __init__(self, interval: float, max_peers: int = 1024) -> None:
        self.interval = interval
        self.max_peers = max_peers
        self._peers: OrderedDict[bytes, list[float]] = OrderedDict()  # peer -> [last logged at, held back]
        self.suppressed = 0  # events not logged individually (all peers, ever)

    def report(self, peer: bytes, now: float, count: int = 1) -> int | None:
        """Record ``count`` events from ``peer``. Returns the number of events
        the caller should log now (these plus those held back since the last
        line), or None if it should stay quiet."""
        p = self._peers.get(peer)
        if p is None:
            if len(self._peers) >= self.max_peers:
                self._peers.popitem(last=False)
            self._peers[peer] = [now, 0.0]
            return count
        self._peers.move_to_end(peer)
        if now - p[0] >= self.interval:
            held = int(p[1])
            p[0], p[1] = now, 0.0
            return held + count
        p[1] += count
        self.suppressed += count
        return None
