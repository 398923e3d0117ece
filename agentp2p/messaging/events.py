"""What goes into a messaging session (events) and what comes out (actions).

The session core never does I/O. The adapter feeds it events with the current
time, ``session.handle(now, event)``, and carries out the returned actions in
order. Outgoing bytes are *pulled* with ``session.transmit(now, max_bytes)``
rather than pushed as actions: the adapter's writer asks for the next frame
only when the stream can take it, so everything that piled up meanwhile goes
out in one frame (write coalescing without any added delay when idle).

Work that needs what the core must not hold (our private key, the node-wide
inbox, the replay guard) is an action too, answered with an event:
:class:`Sign` with :class:`Signed`, :class:`Inspect` with :class:`Inspected`.
The adapter answers at once, before feeding any other event (the core
refuses anything else meanwhile), so the core never waits on I/O and never
calls out.
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

    The session assigns ``session_id``/``seq`` and answers :class:`Accepted`
    (a signing session first asks for the signature: :class:`Sign`).
    ``deadline`` is on the same clock as ``now``; past it an unacknowledged
    message is :class:`Failed`.

    ``handoff``: the caller is done once the peer's durable inbox has the
    message (its *stored* receipt): the session then forgets it, and fails
    it if the peer refuses it for a full inbox. Otherwise the message is
    kept until the peer's application consumed it (the stored receipt is
    only reported) and a refusal is retried, as backpressure.
    """

    envelope: Envelope
    deadline: float | None = None
    handoff: bool = False


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
class Persisted:
    """The adapter wrote delivered messages of ``session_id`` up to ``seq`` to
    its durable inbox (committed: they survive a crash of this process).

    Only a receiver built with ``durable=True`` is told this; it acknowledges
    them to the sender as *stored* (:attr:`Ack.stored`), after which the
    sender forgets them. A delivered message the adapter could not write is
    simply never reported: its sender keeps it until it is consumed.
    """

    session_id: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    """``now`` reached the time given by ``session.next_timer()``."""


@dataclass(frozen=True, slots=True)
class Signed:
    """The answer to :class:`Sign`: the signature of message ``seq`` of our session."""

    seq: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Inspected:
    """The answer to :class:`Inspect`: one verdict per envelope, in order.

    ``None`` accepts it; :data:`INBOX_FULL` means the node cannot hold it (it
    is dropped unacknowledged: the sender retransmits later); any other
    string is a rejection reason (the message is dropped and its seq
    skipped, as a forgery must not block the session).
    """

    verdicts: tuple[str | None, ...]


#: Verdict for an envelope the node has no room for (see :class:`Inspected`).
INBOX_FULL = "inbox_full"
#: Verdict for an envelope the node's authorization policy refuses: skipped
#: like any rejection, and reported to the sender (``Ack.forbidden``).
FORBIDDEN = "forbidden"

Event = Connected | Disconnected | FrameReceived | Send | Consumed | Persisted | TimerFired | Signed | Inspected

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
class Stored:
    """The peer keeps ``envelope`` in its durable inbox (receipt *stored*).

    The peer answers for it from now on, across its restarts. A message
    sent with ``handoff`` is ``released``: the sender forgets it (window,
    outbox) as for :class:`Acked`, and its consumption is reported later,
    in bulk, by :class:`PeerConsumed`. Any other message stays until its
    :class:`Acked` (consumed); this only reports the receipt.
    """

    envelope: Envelope
    released: bool = True


@dataclass(frozen=True, slots=True)
class PeerConsumed:
    """The peer's application consumed every message of our session up to
    ``seq``, among them ``messages`` released earlier as :class:`Stored`
    (nobody waits for those; it is for the counts)."""

    seq: int
    messages: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """``envelope`` was not acknowledged before its deadline (``reason``
    ``"deadline"``), or, sent with ``handoff``, the peer refused it because
    its durable inbox is full (``"inbox_full"``), or the peer's authorization
    policy refused it (``"forbidden"``: never delivered).

    After a deadline it may still have been delivered (its ACK may be what
    got lost); the receiver is told to stop waiting for it, so later
    messages flow on.
    """

    envelope: Envelope
    reason: str


@dataclass(frozen=True, slots=True)
class WindowOpen:
    """The send window has room again after a :class:`WindowFull` refusal."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """An incoming message failed inspection and was dropped (its seq skipped)."""

    envelope: Envelope
    reason: str


@dataclass(frozen=True, slots=True)
class Sign:
    """Sign ``envelope`` (its ``session_id`` and ``seq`` are set) and answer :class:`Signed`.

    Only sessions built with ``sign=True`` ask. The message already counts
    against the window; it is accepted, and goes out, once signed.
    """

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Inspect:
    """Vet new incoming messages and answer :class:`Inspected` (sessions built with ``inspect=True``).

    ``envelopes`` passed every check the session makes itself (new, in the
    receive window, within what this sender may make us hold); ``sizes``
    are what holding each costs. The adapter decides, in order, whether the
    node can hold each one (its totals across peers) and whether it is
    genuine (signature, sender, replay): the place where a message's id is
    first remembered, so only messages the session will keep are shown.
    An envelope it refuses with a reason was already let go of by the
    adapter's accounting; the session releases only its own share.
    """

    envelopes: tuple[Envelope, ...]
    sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Released:
    """The session stopped holding ``messages`` incoming messages of ``size`` bytes in all
    (consumed, or dropped from a reorder buffer): the adapter's inbox accounting shrinks."""

    messages: int
    size: int


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the adapter may count or punish: ``"session_churn"`` (a new session
    while the receiver knows its maximum of them) or ``"inbox_full"`` (a frame's
    messages were refused for lack of room)."""

    kind: str


Action = (
    Transmit | Accepted | Deliver | Acked | Stored | PeerConsumed | Failed | WindowOpen | Rejected | Sign | Inspect
    | Released | Notice
)
