"""The allow list: when it is on, the only peers this node talks to.

The deny list (:mod:`agentp2p.network.denylist`) refuses the peers named on
it; the allow list, once an operator turns it on (``allow_only = true``),
refuses every peer *not* named on it — a closed group known by peer ID, in
both directions, on top of whatever a private-network key already keeps out.
The deny list and the penalty box still apply to peers on it.

Turning it on or off is a config decision, never an API call: a list that
went empty at run time must not open the node to everyone. Entries can be
added and removed at run time (the control API), within ``max_entries``.

Sans-IO and synchronous, like the deny list; enforced by the same predicate
in the dialer, the inbound gate and the post-Noise gate.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

__all__ = ["AllowList", "AllowListFull", "AllowListOff"]

#: Peers at most on one node's list.
MAX_ENTRIES = 10_000


class AllowListFull(ValueError):
    """Adding these peers would put more than ``max_entries`` on the list."""


class AllowListOff(ValueError):
    """The list is not in force (``allow_only = false``), so editing it would do nothing."""


class AllowList:
    """Peers admitted when ``enabled``; every peer is admitted when not."""

    def __init__(self, peers: Iterable[Hashable] = (), *, enabled: bool = False, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.enabled = enabled
        self.max_entries = max_entries
        self._peers: set[Hashable] = set()
        self.refused_total = 0
        initial = list(peers)
        if initial:
            self.add(initial)

    def permits(self, peer: Hashable) -> bool:
        """May this peer connect (or be dialed)? Counts the refusals."""
        if not self.enabled or peer in self._peers:
            return True
        self.refused_total += 1
        return False

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def peers(self) -> list[Hashable]:
        return list(self._peers)

    def _require_on(self) -> None:
        if not self.enabled:
            raise AllowListOff("the allow list is off (allow_only = false in the config): it admits every peer")

    def add(self, peers: Iterable[Hashable]) -> list[Hashable]:
        """Admit ``peers``; returns the new ones. All or nothing within ``max_entries``."""
        self._require_on()
        new = list(dict.fromkeys(p for p in peers if p not in self._peers))
        if len(self._peers) + len(new) > self.max_entries:
            raise AllowListFull(f"adding {len(new)} peers would exceed the allow list's {self.max_entries} entries")
        self._peers.update(new)
        return new

    def remove(self, peers: Iterable[Hashable]) -> list[Hashable]:
        """Stop admitting ``peers``; returns those that were on the list."""
        self._require_on()
        gone = [p for p in dict.fromkeys(peers) if p in self._peers]
        self._peers.difference_update(gone)
        return gone

    def stats(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "allowed_now": len(self._peers), "refused_total": self.refused_total}
