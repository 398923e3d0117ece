"""The deny list: peers this node refuses because someone decided so.

The penalty box (:mod:`agentp2p.network.penalties`) refuses peers for what
they *did*, for a while, on its own. The deny list refuses peers because an
operator or a harness *said so* — block a peer by hand, or cut a test
network in two (``agentp2p devnet``'s ``partition``) — and keeps refusing
them until told otherwise: nothing expires, nothing is counted against the
peer, and the peer cannot get itself off the list.

It is enforced where bans are (the node passes one predicate, "banned or
denied", to both): the dialer does not dial a denied peer, and the
inbound path and the post-Noise gate refuse its connections in both
directions. Denying a peer does not close an open connection by itself;
:meth:`agentp2p.node.Node.deny` does both.

Sans-IO and synchronous; bounded (``max_entries``), because a list that an
API can grow must not grow without end.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

__all__ = ["DenyList", "DenyListFull"]

#: Peers at most on one node's list (a partition of a 10,000-node network fits).
MAX_ENTRIES = 10_000


class DenyListFull(ValueError):
    """Denying these peers would put more than ``max_entries`` on the list."""


class DenyList:
    """A set of peers refused until allowed again."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._peers: set[Hashable] = set()
        #: Peers added and removed over the list's life (what an operator did).
        self.denied_total = 0
        self.allowed_total = 0

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def peers(self) -> list[Hashable]:
        return list(self._peers)

    def deny(self, peers: Iterable[Hashable]) -> list[Hashable]:
        """Refuse ``peers``; returns those that were not denied already.

        All or nothing: if they would not fit, nothing is added and
        :class:`DenyListFull` says so.
        """
        new = list(dict.fromkeys(p for p in peers if p not in self._peers))
        if len(self._peers) + len(new) > self.max_entries:
            raise DenyListFull(
                f"denying {len(new)} more peers would exceed the deny list's {self.max_entries} entries"
            )
        self._peers.update(new)
        self.denied_total += len(new)
        return new

    def allow(self, peers: Iterable[Hashable]) -> list[Hashable]:
        """Stop refusing ``peers``; returns those that were denied."""
        gone = [p for p in dict.fromkeys(peers) if p in self._peers]
        self._peers.difference_update(gone)
        self.allowed_total += len(gone)
        return gone

    def clear(self) -> list[Hashable]:
        """Allow every peer again; returns those that were denied."""
        return self.allow(list(self._peers))

    def stats(self) -> dict[str, Any]:
        return {"denied_now": len(self._peers), "denied_total": self.denied_total, "allowed_total": self.allowed_total}
