"""Per (topic, peer) GRAFT backoff (gossipsub-v1.1.md "PRUNE Backoff").

Why: after a PRUNE both sides wait out the backoff before GRAFTing again;
a peer that GRAFTs early is refused and penalised (P7), so we must never do
it ourselves. Entries are kept ``slack`` past expiry before being cleared
(libp2p/specs#289: the other side may clear its entry one heartbeat late),
and ``active()`` counts them as active until then — a GRAFT of ours can never
land inside the other side's window.

Bounded by ``max_entries``: when full, the entry that expires soonest goes
(it is the least likely to still matter).
"""

from __future__ import annotations

from .rpc import PeerId


class Backoff:
    def __init__(self, max_entries: int, slack: float) -> None:
        self._max = max_entries
        self._slack = slack
        self._until: dict[tuple[str, PeerId], float] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._until)

    def add(self, topic: str, peer: PeerId, until: float) -> None:
        """Back off ``peer`` on ``topic`` until ``until`` (never shortens one)."""
        key = (topic, peer)
        cur = self._until.get(key)
        if cur is not None:
            if until > cur:
                self._until[key] = until
            return
        if len(self._until) >= self._max:
            oldest = min(self._until, key=self._until.__getitem__)
            del self._until[oldest]
            self.evicted += 1
        self._until[key] = until

    def expiry(self, topic: str, peer: PeerId) -> float | None:
        return self._until.get((topic, peer))

    def active(self, topic: str, peer: PeerId, now: float) -> bool:
        """True while we must not GRAFT ``peer`` on ``topic`` (backoff + slack)."""
        until = self._until.get((topic, peer))
        return until is not None and now < until + self._slack

    def in_backoff(self, topic: str, peer: PeerId, now: float) -> bool:
        """True while a GRAFT from ``peer`` is a violation (strict expiry, no slack)."""
        until = self._until.get((topic, peer))
        return until is not None and now < until

    def clear_expired(self, now: float) -> None:
        dead = [k for k, until in self._until.items() if until + self._slack <= now]
        for k in dead:
            del self._until[k]
