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
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["encode_bitmap", "decode_bitmap", "mask", "expected_masks", "quantiles", "ViewWait"]


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


def expected_masks(running: list[int], component: Callable[[int], set[int]]) -> dict[int, int]:
    """Every running node -> the mask of the others it can reach, given
    ``component(i)`` (the nodes ``i`` reaches, itself included). Each
    component is computed once for all its members."""
    out: dict[int, int] = {}
    for i in running:
        if i not in out:
            members = component(i)
            m = mask(members)
            for j in members:
                out[j] = m & ~(1 << j)
    return out


def quantiles(xs: list[float]) -> dict[str, float] | None:
    """P50, P99 (nearest rank) and the largest of ``xs``; None when empty
    (no node matched: not "every node at once")."""
    if not xs:
        return None
    xs = sorted(xs)

    def rank(q: int) -> float:
        return round(xs[max(0, math.ceil(len(xs) * q / 100) - 1)], 3)

    return {"p50": rank(50), "p99": rank(99), "max": round(xs[-1], 3)}


def _count(m: int) -> int:
    return bin(m).count("1")


@dataclass
class ViewWait:
    """One ``wait views``: when each node's view first matched (it may stop
    matching later: a false suspicion), and whether they all match at once.
    Feed it every poll with :meth:`update`."""

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
