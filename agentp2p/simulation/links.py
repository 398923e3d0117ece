"""Per-link latency fixed for each pair of nodes, from a seed, without a table.

A simulated Kademlia node talks to a few hundred of the other 10,000 nodes,
and which ones is not known in advance; storing a latency for every pair
would be 10^8 entries, drawing one afresh for every message would make a
link's latency jitter (and reorder a stream). So the latency of the pair
{i, j} is a pure function of (seed, min(i, j), max(i, j)): a splitmix64 hash
picks a quantile of the distribution (tabulated once, 4,096 steps). Same
seed, same latency for the pair, in any order of calls.

Two shapes: :class:`LognormalLatency` (a mix of near and far peers with a
long tail, the default: median 50 ms one way, sigma 0.5, clipped to
10-200 ms, as the gossipsub simulator's links) and :class:`UniformLatency`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

__all__ = ["LognormalLatency", "UniformLatency"]

_M64 = (1 << 64) - 1
_STEPS_BITS = 12


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit int."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class _PairTable:
    """Looks a pair's latency up in a quantile table, by the pair's hash."""

    table: tuple[float, ...]
    salt: int

    def __call__(self, i: int, j: int) -> float:
        if i > j:
            i, j = j, i
        return self.table[_mix(self.salt ^ ((i << 32) | j)) >> (64 - _STEPS_BITS)]

    def mean(self) -> float:
        return sum(self.table) / len(self.table)


@dataclass(frozen=True)
class LognormalLatency(_PairTable):
    """One-way latency per pair: ``median * exp(sigma * Z)`` clipped to [low, high]."""

    seed: int = 0
    median: float = 0.050
    sigma: float = 0.5
    low: float = 0.010
    high: float = 0.200
    table: tuple[float, ...] = field(init=False, repr=False, compare=False)
    salt: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = 1 << _STEPS_BITS
        nd = NormalDist()
        tab = tuple(min(self.high, max(self.low, self.median * math.exp(self.sigma * nd.inv_cdf((k + 0.5) / steps))))
                    for k in range(steps))
        object.__setattr__(self, "table", tab)
        object.__setattr__(self, "salt", _mix(self.seed * 7919 + 1))

    def describe(self) -> str:
        return (f"lognormal one-way latency per link, median {self.median * 1000:.0f} ms, sigma {self.sigma:g}, "
                f"clipped to {self.low * 1000:.0f}-{self.high * 1000:.0f} ms")


@dataclass(frozen=True)
class UniformLatency(_PairTable):
    """One-way latency per pair, uniform in [low, high]."""

    seed: int = 0
    low: float = 0.010
    high: float = 0.150
    table: tuple[float, ...] = field(init=False, repr=False, compare=False)
    salt: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = 1 << _STEPS_BITS
        tab = tuple(self.low + (self.high - self.low) * (k + 0.5) / steps for k in range(steps))
        object.__setattr__(self, "table", tab)
        object.__setattr__(self, "salt", _mix(self.seed * 7919 + 1))

    def describe(self) -> str:
        return f"uniform one-way latency per link, {self.low * 1000:.0f}-{self.high * 1000:.0f} ms"
