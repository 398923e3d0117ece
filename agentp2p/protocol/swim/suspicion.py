"""Lifeguard suspicion timers that shrink with independent confirmations.

A fixed suspicion timeout forces a bad trade: short means false positives when
a suspect is merely slow to refute, long means slow detection. Lifeguard starts
long (``max``) and shrinks towards ``min`` as *independent* members report the
same suspicion (each distinct origin is one confirmation), following

    timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))

so with k expected confirmations the timeout reaches ``min`` — real failures
are seen by many probers quickly, while a lone (possibly lossy) accuser waits
the longest. The timer measures from when *we* started suspecting.
"""

from __future__ import annotations

import math

from .member import PeerId


class Suspicion:
    __slots__ = ("start", "min", "max", "k", "confirmations", "deadline", "incarnation")

    def __init__(self, start: float, incarnation: int, k: int, min_timeout: float, max_timeout: float,
                 origin: PeerId) -> None:
        self.start = start
        self.incarnation = incarnation
        self.k = k
        self.min = min_timeout
        self.max = max_timeout
        #: The first accuser is not a confirmation of itself.
        self.confirmations: set[PeerId] = {origin}
        self.deadline = start + (self.timeout(0) if k >= 1 else min_timeout)

    def timeout(self, c: int) -> float:
        if self.k < 1:
            return self.min
        frac = math.log(c + 1) / math.log(self.k + 1)
        return max(self.min, self.max - (self.max - self.min) * frac)

    def raise_min(self, least: float) -> bool:
        """Wait at least ``least`` (a healing window opened: core.py,
        _stretch_suspicions), still counted from the start. True if the
        deadline moved (later: the minimum only grows)."""
        if self.min >= least:
            return False
        self.min, self.max = least, max(self.max, least)
        before = self.deadline
        self.deadline = self.start + self.timeout(len(self.confirmations) - 1)
        return self.deadline != before

    def confirm(self, origin: PeerId) -> bool:
        """Record an independent confirmation. True if it was new and counted
        (then the deadline may have moved earlier)."""
        if origin in self.confirmations or len(self.confirmations) > self.k:
            return False
        self.confirmations.add(origin)
        self.deadline = self.start + self.timeout(len(self.confirmations) - 1)
        return True
