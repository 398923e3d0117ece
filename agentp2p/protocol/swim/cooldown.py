"""Once per member per so many periods: the memory behind a cooldown.

The core does two things on a peer's say-so that a peer could make it do
over and over: probe a member whose connection was lost at once (a
ConnectionLost hint), and dial a member it is about to probe again after a
close. Each is allowed once per member per ``periods``; this remembers
when. The memory is bounded (``memory`` members): entries are kept oldest
first, those past their cooldown are forgotten first, and if every entry
is still cooling the oldest goes (its member may act again a little early,
which costs one probe or dial, not a flood: the callers rate-limit too).
"""
from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")


class Cooldown(Generic[K]):
    """When each key last acted, in periods; bounded to ``memory`` keys."""

    __slots__ = ("periods", "memory", "_last")

    def __init__(self, periods: int, memory: int) -> None:
        if periods < 1 or memory < 1:
            raise ValueError("periods and memory must be >= 1")
        self.periods = periods
        self.memory = memory
        self._last: dict[K, int] = {}  # insertion order = order of last action

    def __len__(self) -> int:
        return len(self._last)

    def cooling(self, key: K, period: int) -> bool:
        """``key`` acted less than ``periods`` periods before ``period``."""
        last = self._last.get(key)
        return last is not None and period - last < self.periods

    def within(self, key: K, period: int, periods: int) -> bool:
        """``key`` acted at most ``periods`` periods before ``period``
        (``periods`` below the cooldown's: older marks may be forgotten)."""
        assert periods < self.periods
        last = self._last.get(key)
        return last is not None and period - last <= periods

    def mark(self, key: K, period: int) -> None:
        """``key`` acts in ``period`` (periods never go back)."""
        last = self._last
        last.pop(key, None)
        while last:
            oldest = next(iter(last))
            if len(last) < self.memory and period - last[oldest] < self.periods:
                break  # the rest are newer, so still cooling too
            del last[oldest]
        last[key] = period
