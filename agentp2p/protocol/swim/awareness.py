"""Lifeguard local health awareness (LHA).

SWIM assumes the prober is healthy. When *we* are the slow one (CPU starved,
overloaded NIC, GC pause), our acks arrive late and we would accuse healthy
peers. Lifeguard keeps a small score of evidence that we are unhealthy and
stretches our own probe timeout and period by (score + 1):

* +1 when a probe fails and helpers did not even Nack (the path to them is bad),
  one per missing Nack;
* +1 when we must refute a suspicion about ourselves (others cannot hear us);
* -1 on every successful direct probe.

The score is clamped to [0, max_multiplier - 1].
"""

from __future__ import annotations


class Awareness:
    __slots__ = ("_max", "score")

    def __init__(self, max_multiplier: int) -> None:
        self._max = max_multiplier
        self.score = 0

    def apply(self, delta: int) -> None:
        self.score = min(self._max - 1, max(0, self.score + delta))

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)
