"""A reliable, ordered message session between two peers (sans-IO).

Theory of operation
===================

Each direction of a peer pair is a *stream of messages* owned by its sender:
the sender picks a random 16-byte ``session_id`` and numbers its messages
1, 2, 3... within it. A session object holds both directions: a
:class:`~.sender.Sender` for ours and a :class:`~.receiver.Receiver` for the
peer's. It never touches sockets, clocks or randomness; the adapter drives it::

    actions = session.handle(now, event)     # Connected, FrameReceived, Send, ...
    frame   = session.transmit(now)          # pull: None when nothing to send
    at      = session.next_timer()           # call handle(at, TimerFired()) then

Connection states::

    DISCONNECTED --Connected--> HANDSHAKING --peer Hello--> OPEN
         ^                           |                        |
         +-------- Disconnected -----+------------------------+

* **Connected** (a new stream, dialed or accepted): we queue a ``Hello``
  carrying our session id, our ``low_seq`` (lowest seq we still hold) and an
  ACK of what we hold of the peer's session. Nothing else is sent until the
  peer's Hello arrives; both sides send theirs at once, so this costs half a
  round trip, once per connection. (On a path that may lose frames, an
  unanswered Hello is resent after an RTO, and an open side answers a Hello
  not marked ``established``.)
* **Peer Hello** (resumption): the receiver half selects (or creates, starting
  at ``low_seq - 1``) the state of the peer's session. The sender half takes
  the Hello's ACK as the truth about what the peer holds: acked messages are
  released, selectively held ones are skipped, everything else not
  cumulatively acked is retransmitted in order. If the Hello's ACK is for
  another session (the peer restarted without state, or we did), everything
  unacked goes again. The receiver drops every seq at or below what it
  delivered, so nothing is lost or duplicated across the dropped connection.
* **OPEN**: ``Data`` frames carry batches of envelopes plus ``low_seq`` plus,
  piggybacked, the ACK for the other direction; ``Ack`` frames carry ACKs
  alone. ACKs are delayed up to ``ack_delay`` or ``ack_every`` consumed
  messages, and sent at once on a gap or duplicate (the sender needs them to
  retransmit quickly).
* **Disconnected**: everything in flight is presumed lost. Messages stay
  buffered (``wants_connection`` turns true) until acked on a later
  connection or until their deadline, when they fail and the peer is told
  (via ``low_seq``) to stop waiting for them.

Delivery semantics: :class:`~.events.Deliver` is emitted exactly once per
message, in seq order, per incoming session. ACKs cover only messages the
application *consumed* (:class:`~.events.Consumed`), so a sender's "acked"
means the peer application has it.

Receipts: a session built with ``durable=True`` (its adapter keeps a durable
inbox) also acknowledges what the adapter *stored*
(:class:`~.events.Persisted`), in ``Ack.stored``; the sending session reports
it with :class:`~.events.Stored`, and releases the messages sent with
``Send(handoff=True)`` (their callers wait for that receipt only; their
consumption is counted later, :class:`~.events.PeerConsumed`). A durable
receiver whose inbox is full lists the seqs it refused (``Ack.inbox_refused``)
and the sender fails exactly those handoff messages,
``Failed(reason="inbox_full")`` (not a later one that found room, nor one
with another copy in flight that may); the others are retried, as
backpressure. Without ``durable`` the
frames are exactly those of a receiver that never heard of receipts, and a
sender treats consumption as the stored receipt too. With the durable store
(:mod:`.outbox`), the adapter stores each delivered message before the
application sees it and records consumption when the application
acknowledges it, so a restarted receiver hands over again what was not
acknowledged (at-least-once, same ids) and resumes after the rest.

Flow control: the sender holds at most ``window_messages`` / ``window_bytes``
unacked (capped by the peer's advertised ``receive_window``); beyond that,
``handle(now, Send(...))`` raises :class:`~.window.WindowFull` and a later
:class:`~.events.WindowOpen` says to try again.

Signing and inspection need what the core must not hold (our key, the
node-wide inbox, the replay guard), so a session built with ``sign=True``
answers ``Send`` with :class:`~.events.Sign` and sends the message once
:class:`~.events.Signed` brings the signature, and one built with
``inspect=True`` answers a Data frame's new messages with
:class:`~.events.Inspect` and delivers them once :class:`~.events.Inspected`
brings the verdicts. The adapter answers at once; either way the core calls
nothing and waits for nothing. (Without either flag, messages go unsigned /
are accepted as they are: simulations and benchmarks of the protocol alone.)

Frames from the peer that make no sense (data before Hello, ACKs beyond what
we sent, foreign sessions) are counted and ignored; they never raise.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agentp2p.messaging.events import (
    Accepted,
    Acked,
    Action,
    Connected,
    Consumed,
    Deliver,
    Disconnected,
    Event,
    Failed,
    FrameReceived,
    Inspect,
    Inspected,
    Notice,
    PeerConsumed,
    Persisted,
    Rejected,
    Released,
    Send,
    Sign,
    Signed,
    Stored,
    TimerFired,
    Transmit,
    WindowOpen,
)
from agentp2p.messaging.receiver import Receiver
from agentp2p.messaging.rtt import RttEstimator
from agentp2p.messaging.sender import AckOutcome, Sender
from agentp2p.messaging.window import SendWindow
from agentp2p.messaging.wire import encode_data
from agentp2p.pb.msg_pb2 import Ack, Envelope, Frame, Hello

__all__ = ["ConnState", "Session", "SessionConfig"]

#: Forbidden ranges read from one ACK: more than any receiver sends (its
#: max_sack_ranges, 32 by default), few enough to bound a liar's cost.
MAX_FORBIDDEN_RANGES = 1024


class ConnState(enum.Enum):
    DISCONNECTED = "disconnected"
    HANDSHAKING = "handshaking"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    window_messages: int = 4096
    window_bytes: int = 16 * 1024 * 1024
    receive_window: int = 4096
    #: Bytes one sender may make us hold (buffered + delivered, not consumed),
    #: across all its sessions; receive_window bounds the count the same way.
    receive_bytes: int = 16 * 1024 * 1024
    max_message_bytes: int = 1024 * 1024
    #: Budget for one frame from transmit(); one message larger than it still goes alone.
    max_frame_bytes: int = 256 * 1024
    ack_delay: float = 0.005
    ack_every: int = 64
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 60.0
    dupthresh: int = 3
    max_sack_ranges: int = 32
    #: Treat delivery as consumption (no Consumed events needed).
    auto_consume: bool = False


@dataclass(slots=True)
class ProtocolStats:
    frames_in: int = 0
    frames_out: int = 0
    unexpected_frames: int = 0


class Session:
    """Both directions of messaging with one peer. See the module docstring."""

    def __init__(
        self,
        session_id: bytes,
        config: SessionConfig | None = None,
        *,
        next_seq: int = 1,
        pending: Iterable[tuple[Envelope, float | None]] = (),
        received: Mapping[bytes, int] | None = None,
        restored: Mapping[bytes, list[tuple[int, int]]] | None = None,
        sign: bool = False,
        inspect: bool = False,
        durable: bool = False,
    ) -> None:
        """
        ``session_id``: our outgoing session (16 random bytes; reuse the stored one
        after a restart). ``next_seq``, ``pending`` (stored unacked envelopes with
        deadlines, ascending seq) and ``received`` (peer session -> consumed seq)
        restore durable state; ``restored``: see :class:`~.receiver.Receiver`
        (messages delivered before a restart and not consumed). ``sign``: ask
        for each new envelope's signature (:class:`~.events.Sign`) once its seq
        is set; ``inspect``: ask for a verdict on each new incoming envelope
        (:class:`~.events.Inspect`); ``durable``: the adapter keeps a durable
        inbox and reports its writes (:class:`~.events.Persisted`), which are
        acknowledged as stored, and refusals for a full inbox are reported.
        """
        cfg = config or SessionConfig()
        self.config = cfg
        self.state = ConnState.DISCONNECTED
        self.window = SendWindow(cfg.window_messages, cfg.window_bytes)
        self.sender = Sender(
            session_id,
            window=self.window,
            rtt=RttEstimator(initial_rto=cfg.initial_rto, min_rto=cfg.min_rto, max_rto=cfg.max_rto),
            next_seq=next_seq,
            sign=sign,
            max_message_bytes=cfg.max_message_bytes,
            dupthresh=cfg.dupthresh,
        )
        for env, deadline in pending:
            self.sender.restore(env, deadline)
        self.receiver = Receiver(
            window=cfg.receive_window,
            auto_consume=cfg.auto_consume,
            known=received,
            max_sack_ranges=cfg.max_sack_ranges,
            max_held_bytes=cfg.receive_bytes,
            restored=restored,
            durable=durable,
        )
        self.inspects = inspect
        self.stats = ProtocolStats()
        self._hello_pending = False
        self._hello_at: float | None = None  # resend Hello then if still handshaking
        self._hello_backoff = 0
        self._ack_at: float | None = None

    # -------------------------------------------------------------- queries
    @property
    def session_id(self) -> bytes:
        return self.sender.session_id

    @property
    def wants_connection(self) -> bool:
        """Unacked messages wait and there is no stream: the adapter should dial."""
        return self.state is ConnState.DISCONNECTED and self.sender.unacked > 0

    def can_send(self, payload_size: int) -> bool:
        return self.window.has_room(payload_size)

    def next_timer(self) -> float | None:
        t = self.sender.next_timer(self.state is ConnState.OPEN)
        for u in (self._ack_at, self._hello_at):
            if u is not None and (t is None or u < t):
                t = u
        return t

    # --------------------------------------------------------------- events
    def handle(self, now: float, event: Event) -> list[Action]:
        actions = self._handle(now, event)
        r = self.receiver
        if r.released_messages or r.notices:
            self._report_receiver(actions)
        return actions

    def _handle(self, now: float, event: Event) -> list[Action]:
        if isinstance(event, FrameReceived):
            return self._on_frame(now, event.frame)
        if isinstance(event, Send):
            out = self.sender.accept(event.envelope, event.deadline, event.handoff)
            if out.wire is None:
                return [Sign(out.env)]
            return self._accepted(out.env)
        if isinstance(event, Consumed):
            if self.receiver.consume(event.session_id, event.seq):
                return self._schedule_ack(now)
            return []
        if isinstance(event, Persisted):
            if self.receiver.persisted(event.session_id, event.seq):
                return self._schedule_ack(now)
            return []
        if isinstance(event, Signed):
            out = self.sender.signed(event.seq, event.signature)
            return self._accepted(out.env) if out is not None else []
        if isinstance(event, Inspected):
            return self._vetted(now, event.verdicts)
        if isinstance(event, TimerFired):
            return self._on_timer(now)
        if isinstance(event, Connected):
            self.sender.on_disconnect()
            self.state = ConnState.HANDSHAKING
            self._hello_pending = True
            self._hello_backoff = 0
            self._hello_at = None
            self._ack_at = None
            return [Transmit()]
        if isinstance(event, Disconnected):
            self.sender.on_disconnect()
            self.state = ConnState.DISCONNECTED
            self._hello_pending = False
            self._hello_at = None
            self._ack_at = None
            return []
        raise TypeError(f"not a session event: {event!r}")

    def _on_frame(self, now: float, frame: Frame) -> list[Action]:
        self.stats.frames_in += 1
        kind = frame.WhichOneof("body")
        if self.state is ConnState.DISCONNECTED:
            self.stats.unexpected_frames += 1
            return []
        actions: list[Action] = []
        if kind == "hello":
            hello = frame.hello
            if self.state is ConnState.OPEN and not hello.established:
                self._hello_pending = True  # the peer never got ours
            deliver = self.receiver.on_hello(hello.session_id, hello.low_seq)
            self.window.peer_limit = hello.receive_window or None
            ack = hello.ack if hello.HasField("ack") and hello.ack.session_id == self.session_id else None
            if ack is not None:
                self._forbidden(ack, actions)
            outcome = self.sender.on_resume(now, ack)
            self.state = ConnState.OPEN
            self._hello_at = None
            actions += [Deliver(e) for e in deliver]
            self._receipts(outcome, ack, actions)
            actions += self._schedule_ack(now)
            actions.append(Transmit())
        elif self.state is not ConnState.OPEN:
            self.stats.unexpected_frames += 1  # peer must say Hello first
            return []
        elif kind == "data":
            data = frame.data
            if data.HasField("ack"):
                actions += self._on_ack(now, data.ack)
            deliver, fresh = self.receiver.on_data(data)
            actions += [Deliver(e) for e in deliver]
            if fresh and self.inspects:
                self._report_receiver(actions)  # its accounting first, then the question
                actions.append(Inspect(tuple(e for e, _ in fresh), tuple(n for _, n in fresh)))
            else:
                actions += self._vetted(now, (None,) * len(fresh))
        elif kind == "ack":
            actions += self._on_ack(now, frame.ack)
        else:
            self.stats.unexpected_frames += 1
        if self.window.reopened():
            actions.append(WindowOpen())
        return actions

    def _vetted(self, now: float, verdicts: tuple[str | None, ...]) -> list[Action]:
        """The rest of a Data frame, once its new messages are judged."""
        deliver, rejected = self.receiver.vetted(verdicts)
        actions: list[Action] = [Rejected(e, r) for e, r in rejected]
        actions += [Deliver(e) for e in deliver]
        actions += self._schedule_ack(now)
        return actions

    def _accepted(self, env: Envelope) -> list[Action]:
        actions: list[Action] = [Accepted(env)]
        if self.state is ConnState.OPEN:
            actions.append(Transmit())
        return actions

    def _report_receiver(self, actions: list[Action]) -> None:
        """What the receiver let go of and noticed, as actions for the adapter."""
        r = self.receiver
        if r.released_messages:
            actions.append(Released(r.released_messages, r.released_bytes))
            r.released_messages = r.released_bytes = 0
        if r.notices:
            actions += [Notice(kind) for kind in r.notices]
            r.notices = []

    def _on_ack(self, now: float, ack: Ack) -> list[Action]:
        if ack.session_id != self.session_id:
            self.stats.unexpected_frames += 1
            return []
        actions: list[Action] = []
        self._forbidden(ack, actions)
        self._receipts(self.sender.on_ack(now, ack), ack, actions)
        if self.sender.has_output():
            actions.append(Transmit())
        return actions

    def _forbidden(self, ack: Ack, actions: list[Action]) -> None:
        """Before the ACK's cumulative part (which covers them as handled): our
        messages the peer's policy refused fail as forbidden, not as delivered."""
        if ack.forbidden:
            ranges = [(r.start, r.end) for r in ack.forbidden[:MAX_FORBIDDEN_RANGES]]
            actions += [Failed(o.env, "forbidden") for o in self.sender.fail_forbidden(ranges)]

    def _receipts(self, outcome: AckOutcome, ack: Ack | None, actions: list[Action]) -> None:
        """What an ACK of our session (alone, or in the peer's Hello) means for our messages."""
        actions += [Acked(o.env) for o in outcome.acked]
        actions += [Stored(o.env) for o in outcome.stored]
        actions += [Stored(o.env, released=False) for o in outcome.stored_kept]
        if outcome.consumed_to:
            actions.append(PeerConsumed(outcome.consumed_to, outcome.consumed_stored))
        if ack is not None and ack.inbox_full:
            # Exactly the refused seqs; a receiver that does not list them
            # (an early build of receipts) vouches for the lowest alone.
            refused = [(r.start, r.end) for r in ack.inbox_refused[: self.config.max_sack_ranges]]
            failed = self.sender.fail_refused(refused or [(ack.inbox_full, ack.inbox_full)])
            actions += [Failed(o.env, "inbox_full") for o in failed]

    def _schedule_ack(self, now: float) -> list[Action]:
        r = self.receiver
        if not r.ack_pending or self.state is not ConnState.OPEN:
            return []
        if r.ack_urgent or r.unacked_consumed >= self.config.ack_every:
            self._ack_at = now
            return [Transmit()]
        if self._ack_at is None:
            self._ack_at = now + self.config.ack_delay
        return []

    def _on_timer(self, now: float) -> list[Action]:
        connected = self.state is ConnState.OPEN
        failed = self.sender.on_timer(now, connected)
        actions: list[Action] = [Failed(o.env, "deadline") for o in failed]
        if self._hello_at is not None and self._hello_at <= now:
            self._hello_pending = True  # not answered within an RTO: the path may lose frames
            self._hello_backoff += 1
            self._hello_at = None
            actions.append(Transmit())
        if connected and (self.sender.has_output() or (self._ack_at is not None and self._ack_at <= now)):
            actions.append(Transmit())
        if failed and self.window.reopened():
            actions.append(WindowOpen())
        return actions

    # -------------------------------------------------------------- output
    def transmit(self, now: float, max_bytes: int | None = None) -> bytes | None:
        """The next frame to write (without length prefix), or None.

        Call repeatedly until None whenever a :class:`Transmit` action came,
        ideally each time the stream has finished the previous write, so that
        everything queued meanwhile shares one frame.
        """
        if self._hello_pending:
            self._hello_pending = False
            if self.state is ConnState.HANDSHAKING:
                rto = self.sender.rtt
                self._hello_at = now + min(rto.max_rto, rto.rto * 2**self._hello_backoff)
            return self._count(Frame(hello=self._hello()).SerializeToString())
        if self.state is not ConnState.OPEN:
            return None
        budget = max_bytes if max_bytes is not None else self.config.max_frame_bytes
        sender = self.sender
        forward = sender.need_forward
        msgs = sender.take(now, budget) if sender.has_output() else []
        ack_due = self._ack_at is not None and self._ack_at <= now
        ack: Ack | None = None
        if self.receiver.ack_pending and (msgs or forward or ack_due):
            ack = self._take_ack()
        if msgs or forward:
            ack_bytes = ack.SerializeToString() if ack is not None else None
            return self._count(encode_data(self.session_id, sender.low_seq, msgs, ack_bytes))
        if ack is not None:
            return self._count(Frame(ack=ack).SerializeToString())
        return None

    def _count(self, frame: bytes) -> bytes:
        self.stats.frames_out += 1
        return frame

    def _hello(self) -> Hello:
        hello = Hello(
            session_id=self.session_id,
            low_seq=self.sender.low_seq,
            receive_window=self.config.receive_window,
            established=self.state is ConnState.OPEN,
        )
        ack = self._take_ack()
        if ack is not None:
            hello.ack.CopyFrom(ack)
        return hello

    def _take_ack(self) -> Ack | None:
        self._ack_at = None  # whatever was pending goes out now
        return self.receiver.build_ack()
