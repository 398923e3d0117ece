"""Every node's SWIM view against the devnet's ground truth (``wait views``).

Pure. ``wait converged`` asks one observer; ``wait views`` asks every
running node, which is what "a failure seen by all members" and "a
partition merged" mean (issue #14). A worker answers for each of its nodes
with two bitmaps over the devnet's node indices — the members it holds
alive and those it holds suspect — so a reply costs N/8 bytes per node
(~125 B at 1,000 nodes) instead of the whole view, and the controller
compares them with what each node can reach.

A node's view **matches** when it holds alive exactly the running nodes it
can reach and holds no member suspect: the others are failed, left or
unknown to it. So after a ``kill`` a node matches once it has declared the
killed nodes failed (a suspicion is not yet a verdict), after a
``partition`` once it has declared the other side failed, and after a
``heal`` once it holds everyone alive again.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["encode_bitmap", "decode_bitmap", "mask", "ViewWait"]


def encode_bitmap(indices: Iterable[int], n: int) -> str:
    """Node indices below ``n`` -> base64 of an ``n``-bit little-endian bitmap."""
    bits = bytearray((n + 7) // 8)
    for i in indices:
        if 0 <= i < n:
            bits[i >> 3] |= 1 << (i & 7)
    return base64.b64encode(bytes(bits)).decode("ascii")


def decode_bitmap(text: str) -> int:
    """The inverse of :func:`encode_bitmap`, as an int whose bit i is node i."""
    return int.from_bytes(base64.b64decode(text, validate=True), "little")


def mask(indices: Iterable[int]) -> int:
    """Node indices -> the int whose bit i is set for each."""
    m = 0
    for i in indices:
        m |= 1 << i
    return m


def _count(m: int) -> int:
    return bin(m).count("1")


@dataclass
class ViewWait:
    """One ``wait views``: when each node's view first matched, and whether
    they all match at once. Feed it every poll with :meth:`update`."""

    #: node index -> seconds from the start of the wait to its first match
    first_match: dict[int, float] = field(default_factory=dict)
    #: at the last poll: node index -> (expected alive but not, alive but should not be, suspect)
    mismatched: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: running nodes that did not answer at the last poll (their worker was slow or gone)
    unanswered: int = 0

    def update(self, t: float, expected: Mapping[int, int], views: Mapping[int, tuple[int, int]]) -> bool:
        """``expected``: node -> mask of the nodes it can reach (itself left
        out); ``views``: node -> (alive mask, suspect mask) as reported.
        True when every expected node answered and matches now."""
        self.mismatched = {}
        self.unanswered = 0
        for i, want in expected.items():
            view = views.get(i)
            if view is None:
                self.unanswered += 1
                continue
            alive, suspect = view
            alive &= ~(1 << i)
            if alive == want and not suspect:
                self.first_match.setdefault(i, t)
            else:
                self.mismatched[i] = (_count(want & ~alive), _count(alive & ~want), _count(suspect))
        return not self.mismatched and not self.unanswered
