"""Per-peer inbound frame budget and log throttling for the SWIM adapter.

A SWIM member sends us a handful of frames per protocol period (a ping, an
ack, sometimes a ping-req/nack or a burst of queued frames after a slow
stream open). A peer that sends far more is flooding: each frame costs us a
protobuf decode and up to 64 updates' worth of work. So every peer gets a
token bucket (``rate`` frames/s, ``burst`` at once); frames beyond it are
dropped like lost datagrams (SWIM copes with loss) and counted.

Logging is throttled by :class:`agentp2p.throttled_log.ThrottledLog` (one
line per peer per ``log_interval``), so a flood of bad frames cannot flood
the log. The bucket table is bounded; time is passed in by the caller.
"""

from __future__ import annotations


from agentp2p.network.ratelimit import PeerRateLimiter

__all__ = ["PeerRateLimiter"]
