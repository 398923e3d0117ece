"""Everything about one peer in one direction: its session, stream, timer, waiters.

A node keeps, per remote peer, up to two links:

* the **outgoing link** carries the messages *we* send. We open its stream
  (dialing, and finding the peer in the DHT, as needed); its session's
  sender half numbers our messages.
* the **incoming link** carries the messages the *peer* sends, on the
  streams the peer opens; its session's receiver half reorders, dedups,
  screens and delivers them, and acknowledges them on the same stream.

So each stream is owned by the side that opened it and there is nothing to
arbitrate when both sides dial at once: two streams, one per direction. A
new inbound stream from a peer replaces the old one (the peer only opens one
when it considers the previous dead), and a stream we opened is replaced only
by our own redial. The session core is direction-agnostic; the unused half
of each session just stays empty.

The link applies the actions its session returns (:meth:`apply`): wake the
writer, resolve send waiters (on the *stored* or the *consumed* receipt, as
each caller asked), persist to the outbox and the durable inbox (and tell
the session what the inbox committed, :class:`~.events.Persisted`), deliver
to the service, re-arm its one timer — and answers the session's questions (sign this,
vet these) by asking its owner, feeding the answers back as events.

Layering (one way down, reports up): the service creates links and
connections; a link knows its service only as a :class:`LinkOwner` and is
its connection's :class:`~.connection.StreamOwner`; the session core below
it knows neither.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from libp2p.peer.id import ID

from agentp2p.messaging.connection import Connection
from agentp2p.messaging.events import (
    Accepted,
    Acked,
    Action,
    Connected,
    Consumed,
    Deliver,
    Disconnected,
    Failed,
    FrameReceived,
    Inspect,
    Inspected,
    Notice,
    PeerConsumed,
    Persisted,
    Rejected,
    Released,
    Sign,
    Signed,
    Stored,
    TimerFired,
    Transmit,
    WindowOpen,
)
from agentp2p.messaging.outbox import Outbox
from agentp2p.messaging.session import Session
from agentp2p.pb.msg_pb2 import Envelope, Frame

__all__ = ["CONSUMED", "Delivery", "Link", "LinkOwner", "STORED", "SendWaiter"]

log = logging.getLogger("agentp2p.messaging")

#: The receipts a sender may wait for: the peer's durable inbox has the
#: message (it answers for it from then on, across its restarts), or the
#: peer's application consumed (acknowledged) it.
STORED = "stored"
CONSUMED = "consumed"


@dataclass(slots=True, eq=False)
class SendWaiter:
    """A caller of ``send`` waiting for its message's fate.

    ``want`` is the receipt it waits for (its message was sent with
    ``handoff`` if that is *stored*); ``stored_at``/``consumed_at`` are when
    each receipt came (trio clock). A peer without a durable inbox sends no
    stored receipt: its consumed receipt counts for both.
    """

    want: str = CONSUMED
    event: trio.Event = field(default_factory=trio.Event)
    acked: bool = False
    reason: str = ""
    stored_at: float | None = None
    consumed_at: float | None = None

    def resolve(self) -> None:
        self.acked = True
        self.event.set()


@dataclass(slots=True, eq=False)
class Delivery:
    """A message delivered by a session, awaiting consumption by the application.

    ``order`` is the service-wide delivery number (redelivery keeps it, so
    messages a reader gave back return to the queue in their old order);
    ``owner`` is the reader holding it unacknowledged, if any.
    """

    link: Link
    envelope: Envelope
    done: bool = False
    msg: Any = None
    order: int = 0
    owner: Any = None


class LinkOwner(Protocol):
    """What a link needs of the service that owns it (the service implements it)."""

    store: Outbox | None
    counters: Counter[str]

    def on_deliver(self, item: Delivery, plaintext: bytes | None) -> None:
        """The session delivered a message (in order, once): route it to the application."""
        ...

    def want_connection(self, link: Link) -> None:
        """An outgoing link has unacked messages and no stream: dial."""
        ...

    async def preverify(self, link: Link, frames: list[Frame]) -> None:
        """Before frames are handled: verify big batches of signatures off the trio thread."""
        ...

    def sign(self, env: Envelope) -> bytes:
        """Our signature of ``env`` (answers :class:`~.events.Sign`)."""
        ...

    def inspect(self, link: Link, envelopes: tuple[Envelope, ...], sizes: tuple[int, ...]) -> tuple[str | None, ...]:
        """The verdicts on new incoming messages (answers :class:`~.events.Inspect`)."""
        ...

    def on_released(self, link: Link, messages: int, size: int) -> None:
        """The session let go of held incoming messages (inbox accounting)."""
        ...

    def on_notice(self, link: Link, kind: str) -> None:
        """The session noticed something worth counting or punishing (:class:`~.events.Notice`)."""
        ...

    def abuse(self, peer: ID, reason: str, weight: float, fmt: str, *args: Any) -> None:
        """Count an offence against ``peer`` and log it."""
        ...


class Link:
    def __init__(
        self,
        owner: LinkOwner,
        peer: ID,
        make_session: Callable[[Link], Session],
        *,
        outgoing: bool,
    ) -> None:
        self.owner = owner
        self.peer = peer
        self.peer_bytes = peer.to_bytes()
        self.outgoing = outgoing
        self.conn: Connection | None = None
        self.counters: Counter[str] = owner.counters
        #: Callers of send by seq, while the session holds their message.
        self.waiters: dict[int, SendWaiter] = {}
        self.window_open = trio.Event()
        self.window_queue = trio.Lock()  # senders waiting for room, in arrival order
        self.dialing = False
        self.peer_seen = trio.Event()  # a libp2p connection to the peer appeared
        self.last_error: str | None = None
        self.opened: dict[tuple[bytes, int], bytes] = {}  # plaintext of sealed messages, until Deliver
        self.preverified: dict[int, Any] = {}  # id(envelope) -> RejectReason | None, one frame batch
        self._deliveries: deque[Delivery] = deque()
        self._timer_scope = trio.CancelScope()
        #: Messages and bytes this peer makes us hold (inbox accounting, see service).
        self.inbox_messages = 0
        self.inbox_bytes = 0
        self.reservation: Any = None
        self.restored: list[Envelope] = []  # from the store, to hand over again once running
        #: The durable inbox failed a write: no more stored receipts on this link
        #: (the senders keep their messages until consumed).
        self.inbox_broken = False
        self.consume_broken = False  # a consumption write failed (logged once)
        self._timer_at: float | None = None
        self._timer_wake = trio.Event()
        #: Wall-clock deadline (Unix ms) of the message being accepted, for the outbox.
        self.accept_deadline_ms: int | None = None
        self.session = make_session(self)

    # ------------------------------------------------------- stream owner
    def attach(self, conn: Connection) -> None:
        """Make ``conn`` the link's stream (replacing any previous one)."""
        old = self.conn
        if old is not None:
            self.conn = None
            self.apply(self.session.handle(trio.current_time(), Disconnected()))
            old.close()
        self.conn = conn
        self.last_error = None
        self.apply(self.session.handle(trio.current_time(), Connected()))

    def connection_lost(self, conn: Connection) -> None:
        if self.conn is not conn:
            return  # already replaced
        self.conn = None
        if conn.error:
            self.last_error = conn.error
        self.counters["disconnects"] += 1
        self.apply(self.session.handle(trio.current_time(), Disconnected()))

    async def frames_received(self, conn: Connection, frames: list[Frame]) -> None:
        if self.conn is not conn:
            return  # a replaced stream's leftovers: presumed lost like the rest
        await self.owner.preverify(self, frames)
        try:
            if self.conn is not conn:
                return  # replaced while verifying
            session = self.session
            for frame in frames:  # one synchronous step: no checkpoint between frames
                now = trio.current_time()
                self.apply(session.handle(now, FrameReceived(frame)))
        finally:
            self.preverified.clear()

    def next_frame(self, conn: Connection, now: float) -> bytes | None:
        if self.conn is not conn:
            return None  # replaced: never pull frames meant for the new stream
        return self.session.transmit(now)

    def transmitted(self, conn: Connection) -> None:
        """The writer pulled frames: the retransmission timer may now be armed."""
        self._poke_timer()

    def bad_input(self, conn: Connection, what: str, weight: float, detail: str) -> None:
        self.counters[what + "s"] += 1
        self.owner.abuse(self.peer, "msg:" + what, weight, "%s, resetting the stream", detail)

    # ------------------------------------------------------------- actions
    def apply(self, actions: list[Action]) -> None:
        """Carry out ``actions`` in order; the session's answers to Sign and
        Inspect are appended to ``actions`` and carried out in turn."""
        wake = False
        accepted: list[Envelope] = []
        finished: list[int] = []
        delivered: list[Envelope] = []
        owner = self.owner
        for act in actions:  # grows while iterating (answers to Sign / Inspect)
            kind = type(act)
            if kind is Transmit:
                wake = True
            elif kind is Deliver:
                delivered.append(act.envelope)  # type: ignore[union-attr]
            elif kind is Acked:
                env = act.envelope  # type: ignore[union-attr]
                finished.append(env.seq)
                waiter = self.waiters.pop(env.seq, None)
                if waiter is not None:
                    waiter.consumed_at = trio.current_time()
                    if waiter.stored_at is None:
                        waiter.stored_at = waiter.consumed_at  # consumed implies stored
                    waiter.resolve()
                self.counters["acked"] += 1
            elif kind is Stored:
                env = act.envelope  # type: ignore[union-attr]
                self.counters["stored"] += 1
                if act.released:  # type: ignore[union-attr]
                    finished.append(env.seq)  # handed off: the peer answers for it
                    waiter = self.waiters.pop(env.seq, None)
                else:
                    waiter = self.waiters.get(env.seq)  # kept until consumed (Acked)
                if waiter is not None:
                    waiter.stored_at = trio.current_time()
                    if waiter.want == STORED:
                        waiter.resolve()
            elif kind is PeerConsumed:
                # Handed-off messages the peer's application has now consumed.
                self.counters["acked"] += act.messages  # type: ignore[union-attr]
            elif kind is Accepted:
                accepted.append(act.envelope)  # type: ignore[union-attr]
            elif kind is Failed:
                env = act.envelope  # type: ignore[union-attr]
                finished.append(env.seq)
                waiter = self.waiters.pop(env.seq, None)
                if waiter is not None:
                    waiter.reason = act.reason  # type: ignore[union-attr]
                    waiter.event.set()
                self.counters["failed"] += 1
            elif kind is WindowOpen:
                self.window_open.set()
                self.window_open = trio.Event()
            elif kind is Sign:
                env = act.envelope  # type: ignore[union-attr]
                signed = Signed(env.seq, owner.sign(env))
                actions += self.session.handle(trio.current_time(), signed)
            elif kind is Inspect:
                verdicts = owner.inspect(self, act.envelopes, act.sizes)  # type: ignore[union-attr]
                actions += self.session.handle(trio.current_time(), Inspected(verdicts))
            elif kind is Released:
                owner.on_released(self, act.messages, act.size)  # type: ignore[union-attr]
            elif kind is Notice:
                owner.on_notice(self, act.kind)  # type: ignore[union-attr]
            elif kind is Rejected:
                pass  # counted by the screen, by reason
        store = owner.store
        if delivered:
            # Persisted before any reader can see them: a crash from here on
            # redelivers them after the restart (at-least-once to the reader).
            if store is not None:
                wake = self._persist(store, delivered) or wake
            for env in delivered:
                self._deliver(env)
        if store is not None:
            if accepted:
                store.add(self.peer_bytes, [(e, self.accept_deadline_ms) for e in accepted])
            if finished:
                store.remove(self.peer_bytes, finished)
        if wake and self.conn is not None:
            self.conn.wake()
        self._poke_timer()
        if self.outgoing and self.conn is None and self.session.wants_connection:
            owner.want_connection(self)

    def _persist(self, store: Outbox, delivered: list[Envelope]) -> bool:
        """Write delivered messages to the durable inbox, then tell the session
        (it acknowledges them as stored); True if an ACK is due at once.

        A failed write (disk full, I/O error) is logged and counted; those
        messages are still handed over, from memory, and from then on this
        link gives no stored receipts: their senders keep them until they
        are consumed, so nothing the peer was told is stored can be lost.
        """
        try:
            store.add_inbox(self.peer_bytes, delivered)
        except sqlite3.Error as exc:
            self.counters["inbox_write_errors"] += 1
            if not self.inbox_broken:
                log.error("messaging: cannot store %d incoming messages from %s (%s); they are held in memory "
                          "and not acknowledged as stored", len(delivered), self.peer, exc)
            self.inbox_broken = True
            return False
        if self.inbox_broken or self.outgoing:
            return False
        tops: dict[bytes, int] = {}
        for env in delivered:
            tops[env.session_id] = max(tops.get(env.session_id, 0), env.seq)
        now = trio.current_time()
        wake = False
        for sid, seq in tops.items():
            for act in self.session.handle(now, Persisted(sid, seq)):
                wake = wake or type(act) is Transmit
        return wake

    def _deliver(self, env: Envelope) -> None:
        item = Delivery(self, env)
        self._deliveries.append(item)
        self.owner.on_deliver(item, self.opened.pop((env.session_id, env.seq), None))

    def redeliver(self, env: Envelope, plaintext: bytes | None) -> None:
        """A message restored from the store after a restart: hand it over again."""
        item = Delivery(self, env)
        self._deliveries.append(item)
        self.owner.on_deliver(item, plaintext)

    @property
    def has_deliveries(self) -> bool:
        """Messages handed to the application and not yet consumed (their ACK waits)."""
        return bool(self._deliveries)

    @property
    def idle(self) -> bool:
        """No stream, nothing held: the link may be forgotten (state lives in the store, if any)."""
        return self.conn is None and not self._deliveries and self.session.receiver.held == 0

    def close(self) -> None:
        """Forget the link: stop its timer, give back its reservation."""
        self._timer_scope.cancel()
        if self.reservation is not None:
            self.reservation.close()

    def consumed(self, item: Delivery) -> None:
        """The application took ``item``: persist, then let the session ACK it.

        ACKs must advance in order, while messages of one peer may be taken
        by different consumers (the iterator, handlers); so the consumed
        prefix of this link's deliveries is what is reported.

        A failed write of the consumption (disk full, I/O error) is logged
        and counted, and the session still hears of it: the reader did take
        the messages, and without the ACK their sender's share of the inbox
        would stay full for good. They stay in the store, so a restart
        before a later write succeeds delivers them again (at-least-once,
        as for a reader that dies before acknowledging).
        """
        item.done = True
        q = self._deliveries
        if not q or not q[0].done:
            return
        batch: list[Envelope] = []
        while q and q[0].done:
            batch.append(q.popleft().envelope)
        store = self.owner.store
        if store is not None:
            try:
                store.mark_consumed(self.peer_bytes, batch)
            except sqlite3.Error as exc:
                self.counters["inbox_consume_errors"] += 1
                if not self.consume_broken:
                    log.error("messaging: cannot record the consumption of %d messages from %s (%s); acknowledged "
                              "anyway, a restart may deliver them again", len(batch), self.peer, exc)
                self.consume_broken = True  # logged once per link; counted every time
        now = trio.current_time()
        actions: list[Action] = []
        for env in batch:
            actions += self.session.handle(now, Consumed(env.session_id, env.seq))
        self.apply(actions)

    # -------------------------------------------------------------- timer
    def _poke_timer(self) -> None:
        t = self.session.next_timer()
        if t is not None and (self._timer_at is None or t < self._timer_at):
            self._timer_wake.set()

    async def run_timer(self) -> None:
        """The session's one timer, for the life of the link."""
        with self._timer_scope:
            await self._run_timer()

    async def _run_timer(self) -> None:
        session = self.session
        while True:
            t = session.next_timer()
            self._timer_at = t
            self._timer_wake = trio.Event()
            with trio.move_on_at(t if t is not None else math.inf):
                await self._timer_wake.wait()
            now = trio.current_time()
            if t is not None and now >= t:
                self._timer_at = None
                self.apply(session.handle(now, TimerFired()))


def wall_ms_to_clock(deadline_ms: int | None) -> float | None:
    """A stored wall-clock deadline (Unix ms) on the trio clock."""
    if deadline_ms is None:
        return None
    return trio.current_time() + (deadline_ms - time.time() * 1000) / 1000

