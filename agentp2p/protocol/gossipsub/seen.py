"""The seen cache: message IDs we have already processed, for ``seen_ttl``.

Why: a message reaches us over several mesh links and through IWANT; only the
first copy may be validated, delivered and forwarded (the rest are duplicates,
which still count for scoring). It also answers "should we IWANT this?".

Entries are kept in insertion order with a constant TTL, so the oldest is
always first and expiry is a pop from the front. Bounded: when full, the
oldest entry is forgotten early (a very late duplicate may then be processed
again — harmless, it only costs a validation).
"""

from __future__ import annotations

from collections import OrderedDict

from .rpc import MsgId


class SeenCache:
    def __init__(self, ttl: float, max_size: int) -> None:
        self._ttl = ttl
        self._max = max_size
        self._expiry: OrderedDict[MsgId, float] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._expiry

    def add(self, msg_id: MsgId, now: float) -> bool:
        """Record ``msg_id``; False if it was already there (a duplicate)."""
        if msg_id in self._expiry:
            return False
        if len(self._expiry) >= self._max:
            self._expiry.popitem(last=False)
            self.evicted += 1
        self._expiry[msg_id] = now + self._ttl
        return True

    def discard(self, msg_id: MsgId) -> None:
        """Forget ``msg_id`` (a forged copy must not shadow the genuine one)."""
        self._expiry.pop(msg_id, None)

    def expire(self, now: float) -> None:
        exp = self._expiry
        while exp:
            msg_id, when = next(iter(exp.items()))
            if when > now:
                break
            del exp[msg_id]
