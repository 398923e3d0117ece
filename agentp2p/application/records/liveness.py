"""Is an agent alive? A pluggable answer, with a ping fallback.

``find_agents`` must drop agents that are gone. The best judge is the
membership protocol (SWIM), which watches every peer continuously; a node
plugs it in as a plain callable ``ID -> Liveness`` (ALIVE / SUSPECT / DEAD,
or UNKNOWN for peers it has no opinion on).

Where that is absent — or says UNKNOWN — :class:`PingLiveness` asks the peer
directly: a libp2p ping with a short timeout, many peers concurrently, and
the verdict memoised for ``fresh_for`` seconds so a burst of queries costs
one ping per peer. Any successful exchange with the peer (a record fetch,
say) is evidence too and can be fed in with :meth:`PingLiveness.observe`.

The failure-detection bound with pings alone is therefore
``fresh_for + timeout``: a verdict older than ``fresh_for`` is never used,
and a fresh ping takes at most ``timeout`` to fail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID

from .ranking import Liveness

__all__ = ["LivenessFn", "PingLiveness"]

#: What a membership service offers: the current verdict for a peer, at once.
LivenessFn = Callable[[ID], Liveness]


@dataclass(frozen=True)
class _Verdict:
    alive: bool
    rtt_ms: float | None
    at: float  # trio.current_time()


class PingLiveness:
    """Ping-based liveness with a short memo (see the module docstring)."""

    def __init__(
        self,
        ping: Callable[[ID, float], Awaitable[float]],
        *,
        timeout: float = 1.0,
        fresh_for: float = 2.0,
        max_concurrent: int = 32,
    ) -> None:
        self._ping = ping
        self.timeout = timeout
        self.fresh_for = fresh_for
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._verdicts: dict[ID, _Verdict] = {}
        self.pings = 0
        self.failures = 0

    def _fresh(self, peer: ID) -> _Verdict | None:
        v = self._verdicts.get(peer)
        if v is not None and trio.current_time() - v.at <= self.fresh_for:
            return v
        return None

    def state(self, peer: ID) -> Liveness:
        v = self._fresh(peer)
        if v is None:
            return Liveness.UNKNOWN
        return Liveness.ALIVE if v.alive else Liveness.DEAD

    def rtt_ms(self, peer: ID) -> float | None:
        v = self._fresh(peer)
        return v.rtt_ms if v is not None and v.alive else None

    def observe(self, peer: ID, alive: bool, rtt_ms: float | None = None) -> None:
        """Record evidence from any exchange with ``peer``."""
        self._verdicts[peer] = _Verdict(alive, rtt_ms, trio.current_time())

    async def probe(self, peers: Iterable[ID]) -> None:
        """Ping, concurrently, every peer in ``peers`` without a fresh verdict."""
        todo = [p for p in dict.fromkeys(peers) if self._fresh(p) is None]
        if not todo:
            return
        async with trio.open_nursery() as nursery:
            for peer in todo:
                nursery.start_soon(self._probe_one, peer)
        self._forget_stale()

    async def _probe_one(self, peer: ID) -> None:
        async with self._limiter:
            self.pings += 1
            rtt_s: float | None = None
            # The ping is given the timeout, and held to it: a ping that
            # ignores it must not stall find_agents.
            with trio.move_on_after(self.timeout):
                try:
                    rtt_s = await self._ping(peer, self.timeout)
                except Exception:  # noqa: BLE001 — any failure means "not reachable now"
                    rtt_s = None
            if rtt_s is None:
                self.failures += 1
                self.observe(peer, False)
            else:
                self.observe(peer, True, rtt_s * 1000.0)

    def _forget_stale(self) -> None:
        # Bounded memory: verdicts older than the memo window are useless.
        now = trio.current_time()
        stale = [p for p, v in self._verdicts.items() if now - v.at > self.fresh_for]
        for p in stale:
            del self._verdicts[p]
