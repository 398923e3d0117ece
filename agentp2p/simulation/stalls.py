"""Event loops starved of CPU, for the simulator: stalls shared per process.

The devnet runs many nodes in one process, on one event loop. When the
machine's cores are contended, that loop stops for a while, and every node in
the process stops with it: frames that arrive meanwhile wait in socket
buffers, timers that fall due wait too, and no one in the process answers.

``NetworkModel.slow`` delays one node's traffic by a constant; it cannot
show many members going silent at once and coming back. ``StallModel``
does: node ``i`` shares the loop of process ``process_of[i]`` (by default
``i % procs``; the devnet's workers hold contiguous blocks), and each
process alternates between running for ``Exp(run_mean)`` s and stalling for
``Exp(stall_mean)`` s, stalls starting between ``start`` and ``end`` (the
last may run past ``end``). What fell due in a stall is handled at its end,
in the order it fell due. (Letting the timers go first, as a real loop's
do, since a frame needs several scheduler hops to reach the core, changed
no count that mattered in a trial: left out.) Seeded: the same schedule on
every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class StallModel:
    """Each process's stalls, drawn as the simulation reaches them: ask
    ``blocked_until`` with a time that never goes back per process (the
    simulator's clock does not)."""

    procs: int
    stall_mean: float
    run_mean: float
    start: float = 0.0
    end: float = math.inf
    seed: int = 0
    #: node index -> its process (empty: node % procs)
    process_of: Sequence[int] = ()
    #: per process: the stall not yet over, as (begin, end)
    _next: list[tuple[float, float]] = field(default_factory=list, init=False, repr=False)
    _rngs: list[random.Random] = field(default_factory=list, init=False, repr=False)
    stalls: int = field(default=0, init=False)  # drawn so far (the next one of each process included)

    def __post_init__(self) -> None:
        if self.procs < 1 or self.stall_mean <= 0 or self.run_mean <= 0:
            raise ValueError("need procs >= 1 and positive stall_mean and run_mean")
        if any(not 0 <= p < self.procs for p in self.process_of):
            raise ValueError("process_of must name processes 0..procs-1")
        self._rngs = [random.Random(self.seed * 7919 + p) for p in range(self.procs)]
        self._next = [self._draw(p, self.start) for p in range(self.procs)]

    def _draw(self, proc: int, after: float) -> tuple[float, float]:
        rng = self._rngs[proc]
        begin = after + rng.expovariate(1.0 / self.run_mean)
        if begin >= self.end:
            return (math.inf, math.inf)
        self.stalls += 1
        return (begin, begin + rng.expovariate(1.0 / self.stall_mean))

    def blocked_until(self, node: int, now: float) -> float | None:
        """The end of the stall node ``node``'s loop is in at ``now``, or
        None if it runs. Call with ``now`` never decreasing per process."""
        proc = self.process_of[node] if self.process_of else node % self.procs
        begin, end = self._next[proc]
        while now >= end:
            begin, end = self._next[proc] = self._draw(proc, end)
        return end if now >= begin else None
