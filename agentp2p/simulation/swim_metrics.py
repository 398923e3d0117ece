"""Observers for SwimSimulation runs: detection times, false positives, convergence."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentp2p.protocol.swim import EventKind, MemberEvent, State


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))
    return v[k]


@dataclass
class Crash:
    victim: int
    at: float
    first_suspect: float | None = None
    first_failed: float | None = None
    failed_by: int = 0  # live observers that marked the victim failed
    observers: set[int] = field(default_factory=set)
    all_failed: float | None = None


@dataclass
class Observer:
    """Feed it every MemberEvent (SwimSimulation(on_event=obs)); it keeps counts,
    not logs, so it is cheap at 10,000 members."""

    sim: object = None
    crashes: dict[int, Crash] = field(default_factory=dict)  # victim index -> Crash
    false_suspects: int = 0  # suspect events about members that are up
    false_failed: int = 0  # failed events about members that are up
    bad_views: int = 0  # (observer, up member) pairs currently not ALIVE
    last_bad_zero: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def crash(self, victim: int, at: float) -> None:
        """Call together with sim.crash(victim)."""
        for c in self.crashes.values():
            if victim in c.observers:  # a crashed observer no longer counts
                c.failed_by -= 1
        self.crashes[victim] = Crash(victim, at)

    def __call__(self, now: float, observer: int, ev: MemberEvent) -> None:
        self.counts[ev.kind.value] = self.counts.get(ev.kind.value, 0) + 1
        subject = self.sim.index[ev.peer_id]  # type: ignore[attr-defined]
        c = self.crashes.get(subject)
        if c is not None:
            if ev.kind is EventKind.SUSPECT and c.first_suspect is None:
                c.first_suspect = now
            elif ev.kind is EventKind.FAILED:
                if c.first_failed is None:
                    c.first_failed = now
                if observer not in c.observers:
                    c.observers.add(observer)
                    c.failed_by += 1
                if c.all_failed is None and c.failed_by >= self._expected_observers():
                    c.all_failed = now
            return
        # subject is up: anything but alive is a false view
        was_ok = ev.previous is None or ev.previous is State.ALIVE
        now_ok = ev.kind in (EventKind.JOINED, EventKind.RECOVERED)
        if ev.kind is EventKind.SUSPECT:
            self.false_suspects += 1
        elif ev.kind is EventKind.FAILED:
            self.false_failed += 1
        if was_ok and not now_ok:
            self.bad_views += 1
        elif not was_ok and now_ok:
            self.bad_views -= 1
            if self.bad_views == 0:
                self.last_bad_zero = now

    def _expected_observers(self) -> int:
        sim = self.sim
        return sim.n - len(self.crashes)  # type: ignore[attr-defined]
