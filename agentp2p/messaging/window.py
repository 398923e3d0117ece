"""The bounded send window: backpressure instead of unbounded memory.

Every message accepted for sending stays in memory (and in the outbox) until
the peer acknowledges it. The window caps how many such messages and how many
bytes one session may hold; when it is full, ``send`` is refused with
:class:`WindowFull` and the adapter makes the caller wait for
:class:`~agentp2p.messaging.events.WindowOpen`. The peer advertises its
receive window in Hello; we never keep more in flight than it will buffer.
"""

from __future__ import annotations

__all__ = ["SendWindow", "WindowFull"]


class WindowFull(Exception):
    """The session holds as many unacknowledged messages as it may; wait for WindowOpen."""


class SendWindow:
    def __init__(self, max_messages: int = 4096, max_bytes: int = 16 * 1024 * 1024) -> None:
        if max_messages <= 0 or max_bytes <= 0:
            raise ValueError("window limits must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.peer_limit: int | None = None  # the peer's advertised receive window
        self.messages = 0
        self.bytes = 0
        self.refused = False  # a send was refused; announce WindowOpen when room returns

    @property
    def message_limit(self) -> int:
        if self.peer_limit:
            return min(self.max_messages, self.peer_limit)
        return self.max_messages

    def has_room(self, size: int) -> bool:
        """Room for one more message of ``size`` bytes?

        An empty window always has room, whatever the size: a single message
        larger than ``max_bytes`` must not wait forever.
        """
        if self.messages == 0:
            return True
        return self.messages < self.message_limit and self.bytes + size <= self.max_bytes

    def add(self, size: int) -> None:
        self.messages += 1
        self.bytes += size

    def remove(self, size: int) -> None:
        self.messages -= 1
        self.bytes -= size

    def reopened(self) -> bool:
        """True once after a refusal, when there is room again."""
        if self.refused and self.messages < self.message_limit and self.bytes < self.max_bytes:
            self.refused = False
            return True
        return False
