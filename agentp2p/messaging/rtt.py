"""Retransmission timeout from measured round trips (RFC 6298).

SRTT/RTTVAR smoothing with alpha = 1/8, beta = 1/4, RTO = SRTT + max(G,
4*RTTVAR), clamped to [min_rto, max_rto]. Each timeout doubles the RTO
(exponential backoff) until a new valid sample arrives. Per Karn's
algorithm the caller only feeds samples of messages transmitted exactly once:
an ACK for a retransmitted message cannot tell which copy it acknowledges.

Our minimum is below RFC 6298's 1 s because ACKs here are cheap and links are
often fast; it is configurable.
"""

from __future__ import annotations

__all__ = ["RttEstimator"]


class RttEstimator:
    def __init__(
        self,
        *,
        initial_rto: float = 1.0,
        min_rto: float = 0.2,
        max_rto: float = 60.0,
        granularity: float = 0.001,
    ) -> None:
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._base_rto = initial_rto
        self.backoff = 0  # number of consecutive timeouts

    @property
    def rto(self) -> float:
        return min(self.max_rto, self._base_rto * (2**self.backoff))

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        base = self.srtt + max(self.granularity, 4 * self.rttvar)
        self._base_rto = min(self.max_rto, max(self.min_rto, base))
        self.backoff = 0

    def on_timeout(self) -> None:
        if self.rto < self.max_rto:
            self.backoff += 1
