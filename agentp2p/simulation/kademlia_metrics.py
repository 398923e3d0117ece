"""What a KadSimulation run measures, defined in one place.

* **A sample** is one query we started for measurement (never the cores'
  own refresh and republish lookups): its kind, whether it *succeeded*
  (below), and the core's own QueryStats — requests sent (lookup and write
  phases; every request is answered by one message, so messages = about
  twice the requests), hops (the longest chain of referrals the result
  needed: 1 = a peer from our own table), failures (timed out or failed
  requests) and duration.
* **Latency** is the virtual time from the query's start to its
  QueryFinished, or, for a newcomer, from the moment it starts dialing its
  bootstrap node (``clock`` of the sample), so it includes the dial, the
  identify exchange and the lookup.
* **Success**: FIND_NODE — the result holds the live node truly closest to
  the key (``exact``: all of the k truly closest live nodes, reported
  apart); GET_PROVIDERS — at least one provider of the key was returned.
* A query whose node left before it finished is not a sample (counted in
  ``orphaned``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .swim_metrics import percentile

__all__ = ["Sample", "SampleLog", "percentile", "summarise"]


@dataclass(slots=True)
class Sample:
    kind: str  # "lookup" | "providers" | "provide" | ...
    ok: bool
    latency: float
    hops: int
    requests: int
    failures: int
    timed_out: bool
    exact: bool | None = None  # FIND_NODE: the k truly closest, all of them
    found: int = 0  # providers returned / peers written to
    tag: object = None  # what the scenario attached to the query (e.g. its key)


@dataclass
class SampleLog:
    """Samples by label (e.g. "loss 1 %"), plus queries lost with their node."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    orphaned: int = 0

    def add(self, label: str, s: Sample) -> None:
        self.samples.setdefault(label, []).append(s)

    def get(self, label: str) -> list[Sample]:
        return self.samples.get(label, [])


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """The figures of a set of samples (latencies in seconds)."""
    lat = [s.latency for s in samples]
    ok_lat = [s.latency for s in samples if s.ok]
    hops = [float(s.hops) for s in samples]
    reqs = [float(s.requests) for s in samples]
    exact = [s.exact for s in samples if s.exact is not None]
    return {
        "count": len(samples),
        "success": (sum(s.ok for s in samples) / len(samples)) if samples else math.nan,
        "exact": (sum(exact) / len(exact)) if exact else None,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat) if lat else math.nan,
        "ok_p99": percentile(ok_lat, 99),
        "hops_mean": _mean(hops),
        "hops_p50": percentile(hops, 50),
        "hops_p99": percentile(hops, 99),
        "requests_mean": _mean(reqs),
        "requests_p99": percentile(reqs, 99),
        "failures_mean": _mean([float(s.failures) for s in samples]),
        "timed_out": sum(s.timed_out for s in samples),
        "found_mean": _mean([float(s.found) for s in samples]),
    }
