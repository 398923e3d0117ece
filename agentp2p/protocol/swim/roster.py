"""The member table and the randomized round-robin probe order.

SWIM probes members in a random order that is re-drawn every round, so each
member is probed exactly once per round (bounded detection time) while
different probers stay uncorrelated. New members join the *current* round at a
uniformly random remaining position, as in the SWIM paper.

Both structures are built to be cheap when a simulator runs 10,000 cores in
one process: the table can sit on top of a shared, read-only ``RosterBase``
(the initial membership, one copy for all nodes) and store only what differs
per node; the probe order is a lazily drawn Fisher-Yates shuffle over roster
positions, so it costs memory only for the positions actually drawn.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable, Iterator

from .member import Member, PeerId, State
from .pushpull import FINE_BITS, ViewDigest, peer_hash

_MISSING = object()
_MASK64 = (1 << 64) - 1


def clockwise(start: int, to: int) -> int:
    """Distance from hash ``start`` to hash ``to`` going clockwise round the 64-bit ring (ring.py)."""
    return (to - start) & _MASK64


class RosterBase:
    """A read-only initial membership shared by many tables (simulation warm start)."""

    __slots__ = ("peers", "members", "_digest", "_by_fine", "_ring")

    def __init__(self, peers: Iterable[tuple[PeerId, tuple[bytes, ...]]]) -> None:
        self.peers: list[PeerId] = []
        self.members: dict[PeerId, Member] = {}
        self._digest: ViewDigest | None = None
        self._by_fine: list[list[PeerId]] | None = None
        self._ring: tuple[list[int], list[PeerId]] | None = None
        for peer, addrs in peers:
            if peer not in self.members:
                self.peers.append(peer)
                self.members[peer] = Member(peer, State.ALIVE, 0, addrs, 0.0)

    def digest(self) -> ViewDigest:
        """The push/pull digest of this membership (computed once, shared: copy it)."""
        if self._digest is None:
            d = ViewDigest()
            for peer in self.peers:
                d.toggle(peer, 0, State.ALIVE)
            self._digest = d
        return self._digest

    def in_fine_bucket(self, fine: int) -> list[PeerId]:
        """The peers of push/pull fine bucket ``fine`` (computed once, shared)."""
        if self._by_fine is None:
            by: list[list[PeerId]] = [[] for _ in range(1 << FINE_BITS)]
            for peer in self.peers:
                by[peer_hash(peer) >> (64 - FINE_BITS)].append(peer)
            self._by_fine = by
        return self._by_fine[fine]

    def ring(self) -> tuple[list[int], list[PeerId]]:
        """The peers sorted by ``peer_hash`` (hashes, peers; computed once, shared)."""
        if self._ring is None:
            pairs = sorted((peer_hash(p), p) for p in self.peers)
            self._ring = ([h for h, _ in pairs], [p for _, p in pairs])
        return self._ring


class MemberTable:
    """peer -> Member, with a stable roster of positions for random draws, and
    the push/pull digest of the live members (pushpull.py), kept up to date."""

    __slots__ = ("_base", "_own", "_extra", "_extra_set", "_extra_by_fine", "live_count", "size", "digest")

    def __init__(self, base: RosterBase | None = None, exclude: PeerId | None = None) -> None:
        self._base = base
        self._own: dict[PeerId, Member | None] = {}
        self._extra: list[PeerId] = []
        self._extra_set: set[PeerId] = set()
        self._extra_by_fine: dict[int, list[PeerId]] = {}
        self.live_count = 0  # alive + suspect
        self.size = 0  # all members held (including dead/left tombstones)
        self.digest = base.digest().copy() if base is not None else ViewDigest()
        if base is not None:
            self.live_count = self.size = len(base.members)
            if exclude is not None and exclude in base.members:
                self._own[exclude] = None
                self.live_count -= 1
                self.size -= 1
                self.digest.toggle(exclude, base.members[exclude].incarnation, State.ALIVE)

    def get(self, peer: PeerId) -> Member | None:
        m = self._own.get(peer, _MISSING)
        if m is _MISSING:
            return self._base.members.get(peer) if self._base is not None else None
        return m  # type: ignore[return-value]

    def set(self, member: Member) -> bool:
        """Store ``member``; True if it took a new roster position."""
        peer = member.peer_id
        old = self.get(peer)
        self._own[peer] = member
        was = None
        if old is None:
            self.size += 1
        elif old.live:
            self.live_count -= 1
            was = (old.incarnation, old.state)
        is_ = None
        if member.live:
            self.live_count += 1
            is_ = (member.incarnation, member.state)
        if was != is_:
            if was is not None:
                self.digest.toggle(peer, *was)
            if is_ is not None:
                self.digest.toggle(peer, *is_)
        if (self._base is None or peer not in self._base.members) and peer not in self._extra_set:
            self._extra_set.add(peer)
            self._extra.append(peer)
            self._extra_by_fine.setdefault(peer_hash(peer) >> (64 - FINE_BITS), []).append(peer)
            return True
        return False

    def remove(self, peer: PeerId) -> None:
        old = self.get(peer)
        if old is None:
            return
        self._own[peer] = None
        self.size -= 1
        if old.live:
            self.live_count -= 1
            self.digest.toggle(peer, old.incarnation, old.state)

    @property
    def roster_len(self) -> int:
        return (len(self._base.peers) if self._base is not None else 0) + len(self._extra)

    def at(self, index: int) -> PeerId:
        nb = len(self._base.peers) if self._base is not None else 0
        return self._base.peers[index] if index < nb else self._extra[index - nb]  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[Member]:
        if self._base is not None:
            for peer in self._base.peers:
                m = self.get(peer)
                if m is not None:
                    yield m
        for peer in self._extra:
            m = self._own.get(peer)
            if m is not None:
                yield m

    def in_fine_bucket(self, fine: int) -> Iterator[Member]:
        """Members (tombstones included) in push/pull fine bucket ``fine``."""
        if self._base is not None:
            for peer in self._base.in_fine_bucket(fine):
                m = self.get(peer)
                if m is not None:
                    yield m
        for peer in self._extra_by_fine.get(fine, ()):
            m = self._own.get(peer)
            if m is not None:
                yield m

    def ring_after(self, h: int, width: int) -> list[tuple[int, PeerId]]:
        """Up to ``width`` live members closest after hash ``h`` going clockwise
        on the ring of ``peer_hash`` values, as (distance, peer), closest first
        (ring.py). Walks the shared base's sorted ring from ``h`` (stopping at
        ``width`` live ones) and checks every member added since."""
        return self._ring_walk(h, width, after=True)

    def ring_before(self, h: int, width: int) -> list[tuple[int, PeerId]]:
        """Up to ``width`` live members closest before hash ``h`` (going
        anticlockwise), as (distance, peer), closest first: ring_after's mirror."""
        return self._ring_walk(h, width, after=False)

    def _ring_walk(self, h: int, width: int, *, after: bool) -> list[tuple[int, PeerId]]:
        def distance(x: int) -> int:
            return clockwise(h, x) if after else clockwise(x, h)

        found: list[tuple[int, PeerId]] = []
        if self._base is not None:
            hashes, peers = self._base.ring()
            n = len(peers)
            start, step = (bisect.bisect_right(hashes, h), 1) if after else (bisect.bisect_left(hashes, h) - 1, -1)
            for k in range(n):
                i = (start + step * k) % n
                m = self.get(peers[i])
                if m is not None and m.live:
                    found.append((distance(hashes[i]), peers[i]))
                    if len(found) == width:
                        break
        for peer in self._extra:
            m = self._own.get(peer)
            if m is not None and m.live:
                found.append((distance(peer_hash(peer)), peer))
        found.sort()
        return found[:width]

    def sample(self, rng: random.Random, k: int, accept: Callable[[Member], bool]) -> list[Member]:
        """Up to k distinct members satisfying ``accept``, uniformly at random."""
        n = self.roster_len
        if k <= 0 or n == 0:
            return []
        chosen: dict[PeerId, Member] = {}
        if n > 4 * k + 16:  # big roster: rejection sampling, bounded attempts
            for _ in range(8 * k + 8):
                m = self.get(self.at(rng.randrange(n)))
                if m is not None and m.peer_id not in chosen and accept(m):
                    chosen[m.peer_id] = m
                    if len(chosen) == k:
                        return list(chosen.values())
        pool = [m for m in self if m.peer_id not in chosen and accept(m)]
        need = min(k - len(chosen), len(pool))
        return list(chosen.values()) + rng.sample(pool, need)


class ProbeOrder:
    """Randomized round-robin over roster positions (lazy Fisher-Yates)."""

    __slots__ = ("_rng", "_swaps", "_i", "_n")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._swaps: dict[int, int] = {}
        self._i = 0
        self._n = 0

    def grow(self) -> None:
        """A position was appended to the roster: it joins the current round
        (equivalent to inserting it at a random remaining position). Between
        rounds there is nothing to do: the next round takes the whole roster."""
        if self._i < self._n:
            self._n += 1

    def next(self, roster_len: int) -> int | None:
        if self._i >= self._n:  # round over: start a new one
            self._swaps.clear()
            self._i = 0
            self._n = roster_len
            if roster_len == 0:
                return None
        i = self._i
        j = self._rng.randrange(i, self._n)
        swaps = self._swaps
        value = swaps.get(j, j)
        swaps[j] = swaps.pop(i, i)
        self._i = i + 1
        return value

    @property
    def remaining(self) -> int:
        return self._n - self._i
