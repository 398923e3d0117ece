"""When a lookup request counts as slow: learned from this node's own answers.

Why: a lookup keeps α requests in flight, and a peer that never answers
holds one of those slots for the whole request timeout (5 s on a node).
When many peers stop answering at once — a partition, a crash of many —
the first α candidates can all be such peers, and a lookup waits out one
timeout after another: in the whole-node simulator (1,000 nodes, 15 s into
a partition in two halves) 3 of 40 look-ups for an agent in their own half
found nothing by the 10 s deadline, each having asked only six peers, the
first five or six of them across the cut. Freeing the slot of a request
unanswered after a while (``slow_after``, libtorrent's "short timeout")
lets the lookup ask the next candidate beside it; but a fixed 1 s added
dials on a starved machine whose peers answered in 3 to 5 s (docs/dht.md,
"Real sockets"), which is why it stayed off.

So the threshold can be learned (``slow_after`` None; the node's
``dht.slow_after = "auto"``), as TCP learns its retransmission timeout
(RFC 6298): a smoothed mean and mean deviation of how long this node's
answered lookup requests took, dials included; a request is slow after
``srtt + 4 * rttvar``, within ``[floor, ceiling]``. A network that answers
in 100 ms frees slots after the floor; one whose peers are starved, or far,
gets a threshold near the request timeout, and so nothing more than before.
Before the first answer the threshold is the ceiling's half.

It is not the default: on this project's 2-core test machine, 100 real
nodes in 4 processes (every answer slowed by CPU starvation), a newcomer's
look-ups hit their 10 s deadline with it, the first of each round most,
and saw 16-39 request timeouts where they saw none without it (one run of
each form, docs/dht.md). Answer times there spread from milliseconds to
seconds, so the threshold sits below their slow tail, and each freed slot
is one more request on a machine with no CPU to spare.

A peer cannot use it for much: answering fast moves the threshold down to
the floor at worst (a few more requests in flight, bounded per lookup);
answering slowly moves it up to the ceiling, which is the request timeout:
the behaviour without it.
"""

from __future__ import annotations

__all__ = ["SlowTimer"]

_ALPHA = 0.125  # RFC 6298's gains
_BETA = 0.25


class SlowTimer:
    """Smoothed round trip of answered lookup requests, and the slow threshold it gives."""

    __slots__ = ("floor", "ceiling", "srtt", "rttvar", "samples")

    def __init__(self, *, floor: float, ceiling: float) -> None:
        if not 0 < floor <= ceiling:
            raise ValueError("need 0 < floor <= ceiling")
        self.floor, self.ceiling = floor, ceiling
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.samples = 0

    def sample(self, seconds: float) -> None:
        """A lookup request was answered ``seconds`` after it was sent."""
        r = min(max(seconds, 0.0), self.ceiling)  # a late answer counts as the ceiling, no more
        self.samples += 1
        if self.srtt is None:
            self.srtt, self.rttvar = r, r / 2
            return
        self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - r)
        self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * r

    def threshold(self) -> float:
        """Seconds after which an unanswered lookup request frees its slot."""
        if self.srtt is None:
            return max(self.floor, self.ceiling / 2)
        return min(self.ceiling, max(self.floor, self.srtt + 4 * self.rttvar))
