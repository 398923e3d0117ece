"""Replay protection: each (sender, message id) is accepted at most once.

Within a session, sequence numbers already make duplicates harmless (the
session core drops any seq it has delivered). This guard covers what seq
numbers cannot: the same signed message presented again under another
session or after the receiver lost its session state, e.g. captured and
replayed by a relay, or re-sent by a buggy/malicious peer.

Memory is bounded without giving up soundness by pairing the id set with a
time window:

* a message older than ``max_age_ms`` (by its signed timestamp) is refused as
  STALE: we no longer remember ids that old, so we cannot prove it new;
* a message more than ``max_future_ms`` ahead of our clock is refused as
  STALE too (it would otherwise outlive the window);
* when one sender has more than ``max_entries_per_sender`` ids in the window,
  the oldest is forgotten and that sender's *floor* rises to its timestamp:
  anything not newer than the floor is refused as STALE. So an id is never
  forgotten while a copy of it could still be accepted.

Consequence for senders: a message must reach the receiver within
``max_age_ms`` of its timestamp, so the longest send deadline must be shorter
than ``max_age_ms`` minus the clock skew between the two machines.

Pure logic: the caller passes ``now_ms`` (wall clock, Unix ms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from agentp2p.security.rejections import RejectReason

__all__ = ["ReplayGuard"]


@dataclass(slots=True)
class _SenderWindow:
    seen: dict[str, int] = field(default_factory=dict)  # id -> timestamp_ms
    order: deque[tuple[int, str]] = field(default_factory=deque)  # insertion order
    floor: int = -1  # timestamps <= floor are refused


class ReplayGuard:
    def __init__(
        self,
        *,
        max_age_ms: int = 3_600_000,
        max_future_ms: int = 120_000,
        max_entries_per_sender: int = 65_536,
    ) -> None:
        if max_age_ms <= 0 or max_future_ms < 0 or max_entries_per_sender <= 0:
            raise ValueError("replay guard bounds must be positive")
        self.max_age_ms = max_age_ms
        self.max_future_ms = max_future_ms
        self.max_entries_per_sender = max_entries_per_sender
        self._senders: dict[bytes, _SenderWindow] = {}

    def check(self, sender: bytes, msg_id: str, timestamp_ms: int, now_ms: int) -> RejectReason | None:
        """Accept (and remember) the message, or say why not. Does not count."""
        if timestamp_ms > now_ms + self.max_future_ms:
            return RejectReason.STALE
        horizon = now_ms - self.max_age_ms
        if timestamp_ms < horizon:
            return RejectReason.STALE
        win = self._senders.get(sender)
        if win is None:
            win = self._senders[sender] = _SenderWindow()
        else:
            self._expire(win, horizon)
        if msg_id in win.seen:
            return RejectReason.REPLAYED
        if timestamp_ms <= win.floor:
            return RejectReason.STALE
        self._add(win, msg_id, timestamp_ms)
        return None

    def remember(self, sender: bytes, msg_id: str, timestamp_ms: int) -> None:
        """Seed with an id accepted earlier (e.g. loaded from the durable store)."""
        win = self._senders.setdefault(sender, _SenderWindow())
        if msg_id not in win.seen:
            self._add(win, msg_id, timestamp_ms)

    def prune(self, now_ms: int) -> None:
        """Drop expired ids and idle senders; call now and then (e.g. each minute)."""
        horizon = now_ms - self.max_age_ms
        for sender in list(self._senders):
            win = self._senders[sender]
            self._expire(win, horizon)
            if not win.seen and win.floor < horizon:
                del self._senders[sender]

    def __len__(self) -> int:
        return sum(len(w.seen) for w in self._senders.values())

    def _add(self, win: _SenderWindow, msg_id: str, timestamp_ms: int) -> None:
        win.seen[msg_id] = timestamp_ms
        win.order.append((timestamp_ms, msg_id))
        while len(win.seen) > self.max_entries_per_sender:
            ts, old = win.order.popleft()
            if win.seen.pop(old, None) is not None:
                win.floor = max(win.floor, ts)

    @staticmethod
    def _expire(win: _SenderWindow, horizon: int) -> None:
        # Insertion order is roughly timestamp order; an entry left behind a
        # newer one just lives a little longer, which is safe.
        order, seen = win.order, win.seen
        while order and order[0][0] < horizon:
            _, old = order.popleft()
            seen.pop(old, None)
