"""Our successor on the hash ring of live members (``SwimConfig.ring_probe_every``).

With randomized round-robin alone, the N - 1 probers draw independently, so
in any one period a given member is probed by nobody with probability about
1/e: a silent crash waits for its first probe ~1.6 periods on average, and
1 crash in 100 waits ~5 periods. That wait was the P99 of "failure seen by
all" (docs/swim.md). Placing every member on a ring by a hash of its peer ID
and giving some periods' probes to our successor on it means each member is
also watched by its predecessor at a fixed pace, whatever the draws: a crash
is probed within ``ring_probe_every`` periods while views agree (and by the
round-robin, at the remaining pace, when they do not).

Only the closest neighbour matters (the successor we probe; the predecessor
that probes us, whose connection we keep: RingPredecessor), so instead of a
sorted copy of the roster this keeps a short *prefix* of the live members in
ring order after (before) us: the closest ones, closest first. A member
that becomes live is inserted if it falls inside the prefix; one that stops
being live is removed; an emptied prefix is rebuilt from the table
(``MemberTable.ring_after``, ``ring_before``). The first
entry is then always the closest live member.
"""

from __future__ import annotations

import bisect

from .member import PeerId
from .pushpull import peer_hash
from .roster import MemberTable, clockwise

__all__ = ["RingPredecessor", "RingSuccessor"]


class RingSuccessor:
    """The live members that follow ``own`` on the ring, closest first."""

    __slots__ = ("_own", "_width", "_dists", "_peers", "_stale")

    def __init__(self, own: PeerId, width: int = 4) -> None:
        self._own = peer_hash(own)
        self._width = width
        self._dists: list[int] = []  # clockwise distances, ascending
        self._peers: list[PeerId] = []
        self._stale = True  # rebuild from the table before use

    def distance(self, peer: PeerId) -> int:
        return clockwise(self._own, peer_hash(peer))

    def became_live(self, peer: PeerId) -> None:
        """``peer`` joined, or came back from dead/left."""
        if self._stale or peer in self._peers:
            return
        d = self.distance(peer)
        dists = self._dists
        # Past the prefix's end we cannot tell what lies between: leave it out
        # (an empty prefix is exact only when the table had no live member).
        if dists and d >= dists[-1]:
            return
        i = bisect.bisect_left(dists, d)
        dists.insert(i, d)
        self._peers.insert(i, peer)
        if len(dists) > self._width:
            dists.pop()
            self._peers.pop()

    def left_live(self, peer: PeerId) -> None:
        """``peer`` is dead, left or gone from the table."""
        try:
            i = self._peers.index(peer)
        except ValueError:
            return
        del self._peers[i]
        del self._dists[i]
        if not self._peers:
            self._stale = True

    def successor(self, table: MemberTable) -> PeerId | None:
        return self._closest(table)

    def _closest(self, table: MemberTable) -> PeerId | None:
        if self._stale:
            found = self._scan(table)
            self._dists = [d for d, _ in found]
            self._peers = [p for _, p in found]
            self._stale = False
        return self._peers[0] if self._peers else None

    def _scan(self, table: MemberTable) -> list[tuple[int, PeerId]]:
        return table.ring_after(self._own, self._width)


class RingPredecessor(RingSuccessor):
    """The live members that precede ``own`` on the ring, closest first: the
    first is the member whose ring turns probe us (when views agree).

    Why we keep it: that member probes us every ``ring_probe_every`` periods
    over one long-lived stream, which the connection manager (it counts
    stream opens) sees as idle. Closed from our side, the connection turns
    its next probe into a dial, and on a slow link the dial outlasts the
    probe's timeout: we become a suspect (docs/swim.md, "The prober's
    connection, kept by its target")."""

    __slots__ = ()

    def distance(self, peer: PeerId) -> int:
        return clockwise(peer_hash(peer), self._own)

    def predecessor(self, table: MemberTable) -> PeerId | None:
        return self._closest(table)

    def _scan(self, table: MemberTable) -> list[tuple[int, PeerId]]:
        return table.ring_before(self._own, self._width)
