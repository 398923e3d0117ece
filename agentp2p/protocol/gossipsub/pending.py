"""Messages in flight between first receipt and a verdict.

Why: the core asks the adapter to verify a signature and to run the app
validator, and must remember the message meanwhile. Copies arriving in the
meantime are duplicates (the ID is already in the seen cache) but we note
who sent them: they have the message, so forwarding it back to them would be
waste. Bounded twice: at most ``max_pending`` messages (a full table refuses
new ones — the adapter is not keeping up) and ``_MAX_SENDERS`` senders noted
per message; each message is forgotten after ``timeout`` if the adapter
never answers, so a lost answer cannot leak memory.
"""

from __future__ import annotations

from collections import OrderedDict

from .rpc import Message, MsgId, PeerId

#: Stages
SIGNATURE, VALIDATION = 1, 2

_MAX_SENDERS = 32


class PendingMessage:
    __slots__ = ("msg_id", "message", "from_peer", "stage", "deadline", "senders")

    def __init__(self, msg_id: MsgId, message: Message, from_peer: PeerId, stage: int, deadline: float) -> None:
        self.msg_id = msg_id
        self.message = message
        self.from_peer = from_peer
        self.stage = stage
        self.deadline = deadline
        self.senders: set[PeerId] = set()

    def note_sender(self, peer: PeerId) -> None:
        if len(self.senders) < _MAX_SENDERS:
            self.senders.add(peer)


class Pending:
    def __init__(self, max_size: int, timeout: float) -> None:
        self._max = max_size
        self._timeout = timeout
        self._items: OrderedDict[MsgId, PendingMessage] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self._max

    def add(self, msg_id: MsgId, message: Message, from_peer: PeerId, stage: int, now: float) -> PendingMessage:
        entry = PendingMessage(msg_id, message, from_peer, stage, now + self._timeout)
        self._items[msg_id] = entry
        return entry

    def get(self, msg_id: MsgId) -> PendingMessage | None:
        return self._items.get(msg_id)

    def pop(self, msg_id: MsgId) -> PendingMessage | None:
        return self._items.pop(msg_id, None)

    def expired(self, now: float) -> list[PendingMessage]:
        """Remove and return entries past their deadline (oldest first; deadlines
        are creation + a constant, so insertion order is deadline order)."""
        out = []
        items = self._items
        while items:
            entry = next(iter(items.values()))
            if entry.deadline > now:
                break
            del items[entry.msg_id]
            out.append(entry)
        return out
