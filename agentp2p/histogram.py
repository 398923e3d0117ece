"""A fixed-bucket histogram of durations: constant memory, one bisect per sample.

Latencies that nobody recorded cannot be exported, and a per-sample list
would grow without bound in a long-running node. So the few places where
a latency matters to an operator (a DHT query, a direct message's delivery)
count each sample into a bucket the moment it is known. The buckets are
chosen once and never change, so the counts are Prometheus histogram
buckets as they are (``le`` = "less than or equal", cumulative) and the
metrics endpoint only reads them (agentp2p/application/metrics/).

Pure Python, no dependencies, no clock: the caller measures.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["LATENCY_BUCKETS", "Histogram", "buckets_from_dict"]

#: Seconds: from a loopback round trip to a query that ran into its deadline
#: (the DHT's default query timeout is 10 s, a send's 30 s).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


class Histogram:
    """Counts of observations per bucket, their sum and their number.

    ``bounds`` are the finite upper bounds, increasing; a last ``+Inf``
    bucket is implicit. Observing is O(log buckets) and allocates nothing.
    """

    __slots__ = ("bounds", "_counts", "sum", "count")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        b = tuple(float(x) for x in bounds)
        if not b or any(not math.isfinite(x) for x in b) or any(x >= y for x, y in zip(b, b[1:])):
            raise ValueError(f"bucket bounds must be finite and increasing, not {bounds!r}")
        self.bounds = b
        self._counts = [0] * (len(b) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one sample (a NaN is ignored: it belongs in no bucket)."""
        if value != value:  # NaN
            return
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(upper bound, samples <= bound), ..., (inf, count)]`` — Prometheus's shape."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self._counts):
            running += n
            out.append((bound, running))
        return out

    def as_dict(self) -> dict[str, Any]:
        """For ``stats()`` (JSON): cumulative counts keyed by bound (``"+Inf"`` last)."""
        return {
            "buckets": {("+Inf" if math.isinf(b) else repr(b)): n for b, n in self.cumulative()},
            "sum": self.sum,
            "count": self.count,
        }


def buckets_from_dict(data: dict[str, Any]) -> list[tuple[float, int]]:
    """The inverse of :meth:`Histogram.as_dict`'s ``buckets``: ``[(bound, cumulative)]``, sorted."""
    pairs = [(math.inf if k == "+Inf" else float(k), int(v)) for k, v in data.get("buckets", {}).items()]
    return sorted(pairs)
