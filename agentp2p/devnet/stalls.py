"""How long a worker's event loop stood still, and how much of that was the
garbage collector (the ``stats`` command's ``stalls`` per worker).

Fifty nodes share one trio loop in a devnet worker: while one piece of code
holds it — a full cyclic collection over a large heap, a big synchronous
merge — every node of the worker stops reading, writing and timing out. A
probe or a pub/sub message then looks slow or lost although nothing on the
network was. Two meters tell that apart:

* **loop lag**: a task asks to wake every ``tick`` seconds and records how
  late it woke (the longest lag; and the wake-ups later than ``LATE``,
  with the sum of their lags);
* **collector pauses**: ``gc.callbacks`` time each collection, by
  generation (count, total, longest). CPython runs them synchronously, so
  each one is a stall of the whole process.

Both are cheap: one wake-up per tick, two clock reads per collection. A
worker stopped by ``pause`` counts its pause as one long stall (the clock
runs on while the process is stopped).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import trio

__all__ = ["LATE", "StallMeter"]

#: A wake-up later than this counts as a stall (``late_s`` and ``stalls``).
LATE = 0.1


class StallMeter:
    """Loop lag and collector pauses of this process since :meth:`run` began."""

    def __init__(self, tick: float = 0.05) -> None:
        self.tick = tick
        self.max_lag = 0.0
        self.late_s = 0.0
        self.stalls = 0
        self.gc_count = [0, 0, 0]
        self.gc_total = [0.0, 0.0, 0.0]
        self.gc_max = [0.0, 0.0, 0.0]
        self._gc_started: float | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        if self._gc_started is None:
            return
        took = time.perf_counter() - self._gc_started
        self._gc_started = None
        gen = min(2, max(0, int(info.get("generation", 0))))
        self.gc_count[gen] += 1
        self.gc_total[gen] += took
        self.gc_max[gen] = max(self.gc_max[gen], took)

    async def run(self) -> None:
        """Measure until cancelled (the collector's callback is removed then)."""
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                due = trio.current_time() + self.tick
                await trio.sleep_until(due)
                lag = trio.current_time() - due
                self.max_lag = max(self.max_lag, lag)
                if lag > LATE:
                    self.stalls += 1
                    self.late_s += lag
        finally:
            gc.callbacks.remove(self._on_gc)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_lag_s": round(self.max_lag, 3),
            "stalls": self.stalls,
            "late_s": round(self.late_s, 2),
            "gc": {f"gen{g}": {"count": self.gc_count[g], "total_s": round(self.gc_total[g], 3),
                               "max_s": round(self.gc_max[g], 3)} for g in range(3)},
        }  # fmt: skip
