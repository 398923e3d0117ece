"""What goes into a messaging session (events) and what comes out (actions).

The session core never does I/O. The adapter feeds it events with the current
time, ``session.handle(now, event)``, and carries out the returned actions in
order. Outgoing bytes are *pulled* with ``session.transmit(now, max_bytes)``
rather than pushed as actions: the adapter's writer asks for the next frame
only when the stream can take it, so everything that piled up meanwhile goes
out in one frame (write coalescing without any added delay when idle).
"""

from __future__ import annotations

from dataclasses import dataclass

from agentp2p.pb.msg_pb2 import Envelope, Frame

# --------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Connected:
    """A fresh stream to the peer is open (dialed or accepted). Sends Hello."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The stream is gone; everything in flight on it is presumed lost."""


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """A frame parsed from the stream (see :mod:`agentp2p.messaging.wire`)."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Send:
    """The application hands over a message.

    The session assigns ``session_id``/``seq``, runs its ``finalize`` hook
    (signing), and answers :class:`Accepted`. ``deadline`` is on the same
    clock as ``now``; past it an unacknowledged message is :class:`Failed`.
    """

    envelope: Envelope
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Consumed:
    """The application took delivered message ``seq`` of ``session_id``.

    Only consumed messages are acknowledged, so an ACK means "the application
    has it" and a slow consumer slows the sender down (backpressure end to
    end). Sessions built with ``auto_consume=True`` skip this event.
    """

    session_id: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    """``now`` reached the time given by ``session.next_timer()``."""


Event = Connected | Disconnected | FrameReceived | Send | Consumed | TimerFired

# -------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Transmit:
    """There is something to send: call ``session.transmit`` until it returns None."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """``envelope`` (now with session_id, seq, signature) is in the send buffer.

    A durable adapter writes it to the outbox before telling the caller the
    send was accepted.
    """

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``envelope`` to the application. Emitted exactly once per message, in order."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Acked:
    """The peer's application has ``envelope``: resolve the send, drop it from the outbox."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Failed:
    """``envelope`` was not acknowledged before its deadline.

    It may still have been delivered (its ACK may be what got lost); the
    receiver is told to stop waiting for it, so later messages flow on.
    """

    envelope: Envelope
    reason: str


@dataclass(frozen=True, slots=True)
class WindowOpen:
    """The send window has room again after a :class:`WindowFull` refusal."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """An incoming message failed the ``inspect`` hook and was dropped (its seq skipped)."""

    envelope: Envelope
    reason: str


Action = Transmit | Accepted | Deliver | Acked | Failed | WindowOpen | Rejected
