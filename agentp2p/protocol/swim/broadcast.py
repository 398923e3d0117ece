"""Infection-style dissemination: a transmit-limited queue of membership updates.

Every update we apply is piggybacked on our next outgoing frames until it has
been sent ``lambda * log N`` times (SWIM shows that reaches all N members with
high probability). Frames prefer the *least* transmitted updates, newest first,
so fresh news spreads fastest. An update about a member replaces any older
queued update about the same member. The queue is bounded: when full, the most
transmitted entries are dropped first.

Implementation: buckets keyed by transmit count, each an insertion-ordered
dict member -> update, so taking, requeueing and replacing are O(1) per update.
"""

from __future__ import annotations

from .member import PeerId
from .messages import MemberUpdate
from .wire import update_size


class BroadcastQueue:
    __slots__ = ("_buckets", "_where", "max_size", "pushes")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        #: Updates pushed so far (lets a caller tell whether anything new came in).
        self.pushes = 0
        self._buckets: dict[int, dict[PeerId, MemberUpdate]] = {}
        self._where: dict[PeerId, int] = {}  # member -> transmit count of its queued update

    def __len__(self) -> int:
        return len(self._where)

    def push(self, update: MemberUpdate) -> None:
        """Queue (or replace the queued) update about ``update.peer_id``, untransmitted."""
        self.pushes += 1
        self.discard(update.peer_id)
        self._buckets.setdefault(0, {})[update.peer_id] = update
        self._where[update.peer_id] = 0
        if len(self._where) > self.max_size:
            self._drop_most_transmitted()

    def discard(self, peer: PeerId) -> None:
        t = self._where.pop(peer, None)
        if t is not None:
            bucket = self._buckets[t]
            del bucket[peer]
            if not bucket:
                del self._buckets[t]

    def get(self, peer: PeerId) -> MemberUpdate | None:
        t = self._where.get(peer)
        return None if t is None else self._buckets[t][peer]

    def _drop_most_transmitted(self) -> None:
        worst = max(self._buckets)
        bucket = self._buckets[worst]
        peer = next(iter(bucket))  # oldest of the most transmitted
        self.discard(peer)

    def take(self, limit: int, max_count: int, budget: int) -> list[MemberUpdate]:
        """Pick up to ``max_count`` updates within ``budget`` bytes, count one
        transmission for each, and retire those that reached ``limit``."""
        out: list[MemberUpdate] = []
        if not self._where or max_count <= 0:
            return out
        picked: list[tuple[int, MemberUpdate]] = []
        for t in sorted(self._buckets):
            for peer in reversed(self._buckets[t]):  # newest first
                u = self._buckets[t][peer]
                size = update_size(u)
                if size > budget:
                    continue
                budget -= size
                picked.append((t, u))
                if len(picked) >= max_count or budget < 40:
                    break
            else:
                continue
            break
        for t, u in picked:
            out.append(u)
            bucket = self._buckets[t]
            del bucket[u.peer_id]
            if not bucket:
                del self._buckets[t]
            if t + 1 >= limit:
                del self._where[u.peer_id]
            else:
                self._where[u.peer_id] = t + 1
                self._buckets.setdefault(t + 1, {})[u.peer_id] = u
        return out
