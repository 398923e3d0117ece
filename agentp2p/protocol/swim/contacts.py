"""Members we heard from lately: where gossip frames go.

memberlist gossips to random members. Over libp2p a frame to a member we have
no connection with costs a dial (several round trips, a Noise handshake), and
the connection manager trims idle connections, so random targets would mostly
mean dials. A member that sent us a frame in the last few periods is almost
surely still connected; and since probe targets and probers are random, these
contacts are a random sample of the membership too, which is what an
epidemic needs. Bounded: the most recent ``capacity`` senders.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable

from .member import PeerId


class RecentContacts:
    __slots__ = ("_seen", "capacity")

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[PeerId, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def heard(self, peer: PeerId, now: float) -> None:
        """``peer`` sent us a frame (authenticated) at ``now``."""
        seen = self._seen
        seen[peer] = now
        seen.move_to_end(peer)
        if len(seen) > self.capacity:
            seen.popitem(last=False)

    def pick(self, rng: random.Random, count: int, since: float, ok: Callable[[PeerId], bool]) -> list[PeerId]:
        """Up to ``count`` distinct peers heard from at or after ``since`` for
        which ``ok`` holds, at random. Older entries are dropped on the way."""
        seen = self._seen
        while seen:
            peer, at = next(iter(seen.items()))
            if at >= since:
                break
            seen.popitem(last=False)
        fresh = [p for p in seen if ok(p)]
        if len(fresh) <= count:
            return fresh
        return rng.sample(fresh, count)
