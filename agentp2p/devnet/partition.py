"""Who can talk to whom in the devnet: the partitions in force and what they imply.

Pure. ``partition A B`` makes every node of A deny every node of B and the
other way round (:meth:`agentp2p.node.Node.deny`); partitions add up until
``heal`` clears them all. From that the controller derives its ground truth:

* :meth:`Partitions.deny_lists` — what each node must deny;
* :meth:`Partitions.component` — the nodes a node can still reach, directly
  or through others: where a message it publishes should arrive, and which
  members its SWIM view should hold alive once it has converged.

Two groups that cover the network split it in two components. A partition
that leaves some nodes outside both groups does not split it: the outsiders
relay between the groups (gossipsub forwards through them, SWIM's indirect
probes go through them), so the component is everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["Partitions"]


class Partitions:
    """The partitions applied since the last heal."""

    def __init__(self) -> None:
        self.splits: list[tuple[frozenset[int], frozenset[int]]] = []

    def add(self, a: Iterable[int], b: Iterable[int]) -> None:
        sa, sb = frozenset(a), frozenset(b)
        if sa & sb:
            raise ValueError("a node cannot be on both sides of a partition")
        self.splits.append((sa, sb))

    def clear(self) -> None:
        self.splits.clear()

    def __bool__(self) -> bool:
        return bool(self.splits)

    def separated(self, x: int, y: int) -> bool:
        """True if some partition puts ``x`` and ``y`` on opposite sides."""
        return any((x in a and y in b) or (x in b and y in a) for a, b in self.splits)

    def deny_lists(self, a: Iterable[int], b: Iterable[int], peer_ids: Mapping[int, str]) -> dict[int, list[str]]:
        """For the split ``a`` | ``b``: node index -> the peer IDs it must deny
        (nodes without a known peer ID — never started — are left out)."""
        sa, sb = [i for i in a if i in peer_ids], [i for i in b if i in peer_ids]
        out: dict[int, list[str]] = {}
        for mine, theirs in ((sa, sb), (sb, sa)):
            ids = [peer_ids[j] for j in theirs]
            for i in mine:
                out[i] = ids
        return out

    def component(self, start: int, nodes: Iterable[int]) -> set[int]:
        """The nodes among ``nodes`` that ``start`` reaches through nodes among
        ``nodes`` (``start`` included, if it is among them)."""
        pool = set(nodes)
        if start not in pool:
            return set()
        if not self.splits:
            return pool
        seen = {start}
        frontier = [start]
        rest = pool - seen
        while frontier and rest:
            x = frontier.pop()
            reached = {y for y in rest if not self.separated(x, y)}
            rest -= reached
            seen |= reached
            frontier.extend(reached)
        return seen
