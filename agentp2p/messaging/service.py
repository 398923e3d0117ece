"""Reliable, ordered, signed direct messaging on a node (/agentp2p/msg/1.0.0).

The behaviour half (rust-libp2p's NetworkBehaviour) of messaging: it decides
*what* happens — which session a message joins, when to dial, what a
delivery means for the application, whether a message is genuine and fits
the inbox — while :mod:`.connection` moves the bytes and :mod:`.session`
(sans-IO) decides everything about sequence numbers, ACKs and
retransmission.

It depends on its node only through the narrow contract,
:class:`agentp2p.contract.NodeContext` (handed to :meth:`MessagingService.attach`
and :meth:`~MessagingService.run`): our keys, the stream handler, connection
events, the one dialer (which finds a peer in the DHT when its known
addresses fail, and shares concurrent dials), offences and resources.

Per remote peer there are up to two :class:`~.link.Link`s, one per
direction (see :mod:`.link` for why each stream is owned by its opener).
The service is every link's :class:`~.link.LinkOwner`: links report
deliveries up and ask it to sign and to vet messages; links and connections
never import this module.

Guarantees (details in docs/messaging.md):

* ``await send(...)`` returns once the peer's *application* acknowledged the
  message (ACKs follow the reader's acknowledgement; receipt *consumed*), or,
  with ``wait="stored"``, once the peer's durable inbox has it (receipt
  *stored*: the peer answers for it from then on, and this node forgets it);
  it raises :class:`DeliveryTimeout` at the caller's deadline, and, with
  ``wait="stored"``, :class:`InboxFull` when the peer refused it for a full
  inbox (a caller waiting for consumption waits for room instead). Across dropped
  connections, messages of one sender reach the receiver's application in
  send order, once each while the receiver runs; after a receiver crash,
  messages it had delivered but not had acknowledged are delivered again
  (at-least-once, same message id).
* With ``store_path`` (SQLite), an accepted message survives a restart of
  the sender and is delivered after it; a delivered message is stored before
  the application sees it and removed when it is acknowledged. The store is
  the durable inbox: only a node with one gives stored receipts, and its
  inbox bounds (not the sender's window, which handed-off messages leave)
  then bound what waits for its application; beyond them a sender is told.
* Everything a sender can make us hold is bounded (see :mod:`.receiver` and
  the ``inbox_*`` knobs of :class:`MessagingConfig`).
* Every message is signed with the sender's identity key, and delivered
  only if the signature verifies, the claimed sender is the Noise-authenticated
  stream peer, it is addressed to us and its id was not seen before;
  rejections are counted by reason (``stats()["rejected"]``).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID

from agentp2p.contract import NodeContext
from agentp2p.errors import NotRunningError
from agentp2p.histogram import Histogram
from agentp2p.network.addresses import to_peer_id
from agentp2p.messaging.config import PROTOCOL_ID, MessagingConfig
from agentp2p.messaging.connection import Connection
from agentp2p.messaging.errors import (
    DeliveryError,
    DeliveryTimeout,
    InboxFull,
    MessageForbidden,
    RemoteHandlerError,
    RequestTimeout,
)
from agentp2p.messaging.events import FORBIDDEN, INBOX_FULL, Send
from agentp2p.messaging.link import CONSUMED, STORED, Delivery, Link, SendWaiter, wall_ms_to_clock
from agentp2p.messaging.message import REPLY_ERROR, REPLY_OK, REQUEST, IncomingMessage, Receipt
from agentp2p.messaging.outbox import Outbox
from agentp2p.messaging.receiver import held_size
from agentp2p.messaging.sender import MessageTooLarge
from agentp2p.messaging.session import Session
from agentp2p.messaging.window import WindowFull
from agentp2p.messaging.wire import max_frame_for
from agentp2p.pb.msg_pb2 import ENVELOPE_FLAG_SEALED, Envelope, Frame
from agentp2p.security.rejections import MessageRejected, RejectCounters, RejectReason
from agentp2p.security.screen import InboundScreen
from agentp2p.security.sealing import open_envelope, seal_envelope
from agentp2p.security.signing import signing_bytes, verify_envelope
from agentp2p.throttled_log import OncePerInterval, ThrottledLog

log = logging.getLogger("agentp2p.messaging")

__all__ = [
    "CONSUMED",
    "Handler",
    "Incoming",
    "IncomingMessage",
    "MessagingConfig",
    "MessagingService",
    "PROTOCOL_ID",
    "Receipt",
    "STORED",
]

Handler = Callable[[IncomingMessage], Awaitable[bytes | None]]

#: Longest application type: the request prefix must still fit the signed type field.
MAX_TYPE_CHARS = 200
_UNCHECKED = object()
#: Offence weight of a rejected message, by reason. Forgeries and tampering
#: are never honest; a malformed one may be a buggy peer; a replay or a stale
#: timestamp can follow an honest restart or a skewed clock, so they cost little.
REJECTION_WEIGHTS: dict[RejectReason, float] = {
    RejectReason.FORGED: 5.0,
    RejectReason.TAMPERED: 5.0,
    RejectReason.MALFORMED: 2.0,
    RejectReason.REPLAYED: 0.5,  # at most once a minute per peer: a crash can replay a window's worth
    RejectReason.STALE: 0.0,  # a sender's clock is wrong: its messages are refused, that is all
}
#: Replays are charged at most once per this many seconds per peer (see REJECTION_WEIGHTS).
REPLAY_CHARGED_ONCE_PER = 60.0


@dataclass(slots=True, eq=False)
class _ReplyWaiter:
    peer: ID
    event: trio.Event = field(default_factory=trio.Event)
    payload: bytes = b""
    error: str | None = None


def _verify_batch(envs: list[Envelope], stream_peer: bytes, local: bytes) -> list[RejectReason | None]:
    """Signature/sender checks for many envelopes (runs in a worker thread)."""
    out: list[RejectReason | None] = []
    for env in envs:
        try:
            verify_envelope(env, authenticated_peer=stream_peer, local_peer=local)
        except MessageRejected as exc:
            out.append(exc.reason)
        else:
            out.append(None)
    return out


class MessagingService:
    """The messaging NodeService. See the module docstring."""

    name = "messaging"

    def __init__(self, config: MessagingConfig | None = None, store_path: Path | str | None = None) -> None:
        self.config = config or MessagingConfig()
        self.store_path = Path(store_path) if store_path is not None else None
        self.store: Outbox | None = None
        self.counters: Counter[str] = Counter()
        # Seconds from a send being accepted to the receipt its caller waited
        # for, stored or consumed (window waits, dials and retransmissions
        # included); fixed buckets, read by the metrics endpoint.
        self.delivery_latency = Histogram()
        self.ctx: NodeContext | None = None
        self._authorizer: Any = None
        self._replay_charges = OncePerInterval(REPLAY_CHARGED_ONCE_PER)
        self.screen: InboundScreen | None = None
        self._out: dict[ID, Link] = {}
        self._in: dict[ID, Link] = {}
        self._handlers: dict[str, Handler] = {}
        self._replies: dict[str, _ReplyWaiter] = {}
        self._nursery: trio.Nursery | None = None
        self._started = trio.Event()
        self._stopped = False
        # The application inbox: delivered messages no reader took yet, and
        # those a reader took and has not acknowledged (by message id). Both
        # are bounded by the per-sender and total inbox limits (the messages
        # count as held until acknowledged).
        self._queue: deque[Delivery] = deque()
        self._queue_lot = trio.lowlevel.ParkingLot()
        self._outstanding: dict[str, list[Delivery]] = {}
        self._order = itertools.count(1)
        self.inbox_messages = 0
        self.inbox_bytes = 0
        self._tlog = ThrottledLog(log, interval=30.0)
        self._work_send, self._work_recv = trio.open_memory_channel[
            tuple[Delivery, IncomingMessage, Handler | None]
        ](math.inf)

    # ---------------------------------------------------------- lifecycle
    def attach(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        # The node's policy on who may send which types and call which capabilities.
        self._authorizer = getattr(ctx, "authorizer", None)
        self._my_id = ctx.peer_id
        self._me = self._my_id.to_bytes()
        self._key = ctx.identity.private_key
        self.screen = InboundScreen(ctx.peer_id, counters=RejectCounters())
        if self.store_path is not None:
            self.store = Outbox(self.store_path, durable=self.config.durable_sync)
            guard = self.screen.guard
            for sender, msg_id, ts in self.store.recent_ids(int(time.time() * 1000) - guard.max_age_ms):
                guard.remember(sender, msg_id, ts)
        self._resources = ctx.resources
        ctx.set_stream_handler(PROTOCOL_ID, self._on_stream)

    async def run(self, ctx: NodeContext, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. Supports ``nursery.start`` (started once usable)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch_peers, ctx.events.subscribe())
                nursery.start_soon(self._dispatch_handlers)
                nursery.start_soon(self._prune_forever)
                if self.store is not None:
                    # Messages accepted before a restart: resume their sessions;
                    # each link dials because it wants a connection.
                    for peer in self.store.peers_with_pending():
                        self._out_link(ID(peer))
                    # Delivered before a restart and never acknowledged by the
                    # application: hand them over again (at-least-once).
                    for peer in self.store.peers_with_inbox():
                        self._in_link(ID(peer))
                self._started.set()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._stopped = True
            for link in [*self._out.values(), *self._in.values()]:
                for waiter in link.waiters.values():
                    waiter.reason = "stopped"
                    waiter.event.set()
                link.waiters.clear()
            if self.store is not None:
                self.store.close()
                self.store = None

    async def _ready(self) -> None:
        """Wait for run() if the node is starting (it spawns services without waiting)."""
        if self._nursery is None and not self._stopped and self.ctx is not None:
            with trio.move_on_after(5):
                await self._started.wait()
        self._require_running()

    def _require_running(self) -> trio.Nursery:
        if self._nursery is None:
            raise NotRunningError("messaging is not running; start the node first")
        return self._nursery

    # ------------------------------------------------------------ sending
    async def send(
        self,
        peer: ID | str,
        payload: bytes,
        *,
        type: str = "message",  # noqa: A002 - the protocol's field name
        timeout: float = 30.0,
        seal: bool = False,
        wait: str = CONSUMED,
    ) -> str:
        """Send ``payload`` to ``peer``; return its message id once the peer's application has it.

        Dials as needed (the node's dialer finds the peer in the DHT if its
        known addresses fail), and keeps retrying until ``timeout`` seconds
        have passed, then raises
        :class:`DeliveryTimeout`. ``seal=True`` encrypts the payload to the
        peer's key (end to end). Messages are delivered in the order their
        ``send`` calls were accepted. Cancelling the caller does not withdraw
        the message: it was accepted and is still delivered if possible.

        ``wait="stored"`` returns as soon as the peer's durable inbox has the
        message instead (a peer without one: once consumed), and this node
        forgets it then; the peer refusing it because that inbox is full
        raises :class:`InboxFull` at once. (Waiting for consumption, a full
        inbox is backpressure: the message is retried until there is room
        or the deadline.) The receipts themselves: :meth:`send_with_receipt`.
        """
        return (await self.send_with_receipt(peer, payload, type=type, timeout=timeout, seal=seal, wait=wait)).id

    async def send_with_receipt(
        self,
        peer: ID | str,
        payload: bytes,
        *,
        type: str = "message",  # noqa: A002 - the protocol's field name
        timeout: float = 30.0,
        seal: bool = False,
        wait: str = CONSUMED,
    ) -> Receipt:
        """:meth:`send`, answering the :class:`Receipt`: which receipt came and when."""
        _check_type(type)
        if wait not in (STORED, CONSUMED):
            raise ValueError(f"wait must be {STORED!r} or {CONSUMED!r}, not {wait!r}")
        deadline = trio.current_time() + timeout
        return await self._send(to_peer_id(peer), payload, type, deadline, seal, wait=wait)

    def _accept(self, link: Link, env: Envelope, deadline: float, handoff: bool) -> list[Any]:
        now = trio.current_time()
        link.accept_deadline_ms = int((time.time() + deadline - now) * 1000)
        try:
            return link.session.handle(now, Send(env, deadline, handoff))
        except MessageTooLarge as exc:
            raise DeliveryError(str(exc)) from None

    async def _send(
        self,
        pid: ID,
        payload: bytes,
        type_: str,
        deadline: float,
        seal: bool,
        msg_id: str | None = None,
        wait: str = CONSUMED,
    ) -> Receipt:
        await self._ready()
        started = trio.current_time()
        if pid == self._my_id:
            raise DeliveryError("cannot send a message to ourselves")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {payload.__class__.__name__}")
        env = Envelope(
            id=msg_id or os.urandom(16).hex(),
            sender=self._me,
            recipient=pid.to_bytes(),
            type=type_,
            payload=bytes(payload),
            timestamp_ms=int(time.time() * 1000),
        )
        if seal:
            try:
                seal_envelope(env)
            except MessageRejected as exc:
                raise DeliveryError(f"cannot seal to {pid}: {exc.detail}") from None
        link = self._out_link(pid)
        try:
            if link.window_queue.locked():
                raise WindowFull  # others already wait for room: queue behind them (FIFO)
            actions = self._accept(link, env, deadline, wait == STORED)
        except WindowFull:
            # One waiter at a time watches the window (trio.Lock is fair), so
            # a full window costs one wake-up per opening, not one per caller.
            self.counters["window_waits"] += 1
            with trio.move_on_at(deadline):
                async with link.window_queue:
                    while True:
                        try:
                            actions = self._accept(link, env, deadline, wait == STORED)
                            break
                        except WindowFull:
                            await link.window_open.wait()
            if not env.seq:
                raise DeliveryTimeout(f"send window to {pid} stayed full until the deadline") from None
        seq = env.seq
        waiter = SendWaiter(want=wait)
        link.waiters[seq] = waiter
        self.counters["sent"] += 1
        link.apply(actions)
        try:
            # Resolved on its receipt, or failed by the session (deadline,
            # a full inbox for a handoff, stop).
            await waiter.event.wait()
        finally:
            if link.waiters.get(seq) is waiter:
                del link.waiters[seq]
        if waiter.acked:
            self.delivery_latency.observe(trio.current_time() - started)
            return Receipt(
                id=env.id,
                peer=pid,
                status=CONSUMED if waiter.consumed_at is not None else STORED,
                stored_after=None if waiter.stored_at is None else waiter.stored_at - started,
                consumed_after=None if waiter.consumed_at is None else waiter.consumed_at - started,
            )
        if waiter.reason == "stopped":
            raise DeliveryError(f"messaging stopped before {pid} acknowledged message {env.id}")
        if waiter.reason == "inbox_full":
            self.counters["refused_inbox_full"] += 1
            raise InboxFull(
                f"{pid} refused message {env.id}: its inbox is full (its agent is not reading, or reads more "
                "slowly than messages arrive); nothing was stored, send it again later"
            )
        if waiter.reason == "forbidden":
            self.counters["refused_forbidden"] += 1
            what = f"request {env.type[len(REQUEST):]!r}" if env.type.startswith(REQUEST) else f"type {env.type!r}"
            raise MessageForbidden(f"{pid} refused message {env.id}: its policy does not allow {what} from this node")
        if waiter.stored_at is not None:
            late = DeliveryTimeout(
                f"{pid} stored message {env.id} but its application did not consume it before the deadline "
                "(it is not lost: the peer delivers it when its agent reads)"
            )
            late.stored = True
            raise late
        detail = f" (last error: {link.last_error})" if link.last_error else ""
        raise DeliveryTimeout(f"{pid} did not acknowledge message {env.id} before the deadline{detail}")

    # ----------------------------------------------------------- receiving
    def incoming(self) -> Incoming:
        """Messages for which no handler is set, in order per sender.

        ``async for msg in svc.incoming(): ...`` — each message is acknowledged
        (to its sender, and in the store) when the loop asks for the next one,
        when the loop is left (``break``, ``return``, an exception: the
        iterator is dropped or closed), or earlier with :meth:`ack`. So a
        crash while the body handles a message leaves it unacknowledged, and
        with a store it is delivered again after the restart, with the same
        id (at-least-once: deduplicate by ``msg.id`` if handling twice
        matters). Several iterators may run; each message goes to one of them.
        """
        return Incoming(self)

    async def receive(self, *, ack: bool = True) -> IncomingMessage:
        """The next incoming message.

        ``ack=True`` acknowledges it at once (at-most-once if the process dies
        while handling it). ``ack=False`` leaves it unacknowledged until
        :meth:`ack`: its sender's ``send`` does not return before that, and
        with a store it is delivered again after a restart.
        """
        item = await self._take(None)
        if ack:
            self._ack_item(item)
        return item.msg  # type: ignore[no-any-return]

    def ack(self, msg: IncomingMessage | str) -> bool:
        """Acknowledge a message taken from :meth:`incoming`/:meth:`receive` (or its id).

        Returns False if no unacknowledged message has that id (already
        acknowledged, or unknown). Acknowledging twice is harmless.
        """
        msg_id = msg if isinstance(msg, str) else msg.id
        items = self._outstanding.get(msg_id)
        if not items:
            return False
        self._ack_item(items[0])
        return True

    def give_back(self, owner: object) -> int:
        """A reader went away: its unacknowledged messages go back to the queue
        (in their delivery order, ahead of newer ones) for the next reader."""
        back = [
            item for items in self._outstanding.values() for item in items if item.owner is owner
        ]
        if not back:
            return 0
        for item in back:
            self._drop_outstanding(item)
            item.owner = None
        back.sort(key=lambda d: d.order)
        self._queue.extendleft(reversed(back))
        self.counters["redelivered"] += len(back)
        self._queue_lot.unpark_all()
        return len(back)

    async def take(self, owner: object) -> IncomingMessage:
        """The next message, unacknowledged, for the reader ``owner`` (any object):
        :meth:`ack` it, or :meth:`give_back` everything ``owner`` holds when
        that reader goes away (the control API's event stream does both)."""
        return (await self._take(owner)).msg  # type: ignore[no-any-return]

    async def _take(self, owner: object) -> Delivery:
        while not self._queue:
            await self._queue_lot.park()
        item = self._queue.popleft()
        item.owner = owner
        self._outstanding.setdefault(item.msg.id, []).append(item)
        if self._queue:
            self._queue_lot.unpark()  # more waiting: pass the baton on
        return item

    def _drop_outstanding(self, item: Delivery) -> None:
        items = self._outstanding.get(item.msg.id)
        if items is None:
            return
        try:
            items.remove(item)
        except ValueError:
            return
        if not items:
            del self._outstanding[item.msg.id]

    def _ack_item(self, item: Delivery) -> None:
        if item.done or self._stopped:
            return
        self._drop_outstanding(item)
        item.owner = None
        self.counters["acked_by_reader"] += 1
        item.link.consumed(item)

    # ----------------------------------------------------- request/response
    def set_handler(self, type: str, handler: Handler | None) -> None:  # noqa: A002
        """Handle messages of ``type`` with ``handler`` (None removes it).

        Handled messages do not appear in :meth:`incoming`. For a request the
        handler's return value (bytes, or None for empty) is the response; an
        exception becomes an error response (:class:`RemoteHandlerError` at
        the requester) and never reaches the node.
        """
        _check_type(type)
        if handler is None:
            self._handlers.pop(type, None)
        else:
            self._handlers[type] = handler

    async def request(
        self,
        peer: ID | str,
        payload: bytes,
        *,
        type: str = "request",  # noqa: A002
        timeout: float = 30.0,
        seal: bool = False,
    ) -> bytes:
        """Send a request and return the peer handler's response payload.

        Raises :class:`RequestTimeout` if no response comes within ``timeout``
        (whether or not the request was delivered), :class:`DeliveryTimeout`
        if the request itself was not acknowledged in time, and
        :class:`RemoteHandlerError` if the peer's handler raised (or it has none).
        """
        _check_type(type)
        pid = to_peer_id(peer)
        deadline = trio.current_time() + timeout
        rid = os.urandom(16).hex()
        waiter = self._replies[rid] = _ReplyWaiter(pid)
        try:
            await self._send(pid, payload, REQUEST + type, deadline, seal, msg_id=rid)
            with trio.move_on_at(deadline):
                await waiter.event.wait()
            if not waiter.event.is_set():
                raise RequestTimeout(f"no response from {pid} to request {rid} within {timeout}s")
        finally:
            self._replies.pop(rid, None)
        if waiter.error is not None:
            raise RemoteHandlerError(waiter.error)
        return waiter.payload

    async def _dispatch_handlers(self) -> None:
        # Consumption (and so the ACK) happens when a handler slot is free:
        # slow handlers slow the senders down rather than filling memory.
        slots = trio.Semaphore(self.config.max_handler_tasks)
        nursery = self._require_running()
        async for item, msg, handler in self._work_recv:
            await slots.acquire()
            item.link.consumed(item)
            nursery.start_soon(self._run_handler, slots, msg, handler)

    async def _run_handler(self, slots: trio.Semaphore, msg: IncomingMessage, handler: Handler | None) -> None:
        result: bytes | None = None
        error: str | None = None
        try:
            if handler is None:
                error = f"no handler for type {msg.type!r}"
            else:
                result = await handler(msg)
                if result is not None and not isinstance(result, (bytes, bytearray, memoryview)):
                    error = f"handler returned {result.__class__.__name__}, not bytes"
        except Exception as exc:  # noqa: BLE001 - a handler bug must never reach the node
            self.counters["handler_errors"] += 1
            error = f"{exc.__class__.__name__}: {exc}"
            log.info("messaging: handler for %r failed on %s: %s", msg.type, msg.id, error)
        finally:
            slots.release()
        if not msg.is_request:
            return
        if error is not None:
            type_, payload = REPLY_ERROR + msg.id, error.encode()[:4096]
        else:
            type_, payload = REPLY_OK + msg.id, bytes(result or b"")
        try:
            await self._send(msg.sender, payload, type_, trio.current_time() + self.config.reply_timeout, msg.sealed)
        except (DeliveryError, NotRunningError) as exc:
            self.counters["replies_failed"] += 1
            log.info("messaging: response to %s not delivered: %s", msg.id, exc)

    # ----------------------------------------------------- delivery path
    def on_deliver(self, item: Delivery, plaintext: bytes | None) -> None:
        """A session delivered a message (in order, exactly once): route it."""
        env = item.envelope
        self.counters["delivered"] += 1
        type_ = env.type
        if type_.startswith("~"):
            if type_.startswith(REPLY_OK) or type_.startswith(REPLY_ERROR):
                item.link.consumed(item)
                waiter = self._replies.get(type_[len(REPLY_OK) :])
                if waiter is None or waiter.peer != item.link.peer or waiter.event.is_set():
                    self.counters["unmatched_replies"] += 1
                    return
                payload = plaintext if plaintext is not None else env.payload
                if type_.startswith(REPLY_ERROR):
                    waiter.error = payload.decode(errors="replace")
                else:
                    waiter.payload = payload
                waiter.event.set()
                return
            if not type_.startswith(REQUEST):
                item.link.consumed(item)
                self.counters["unknown_reserved_type"] += 1
                return
        msg = IncomingMessage(
            id=env.id,
            sender=item.link.peer,
            type=type_[len(REQUEST) :] if type_.startswith(REQUEST) else type_,
            payload=plaintext if plaintext is not None else env.payload,
            timestamp=env.timestamp_ms / 1000,
            sealed=bool(env.flags & ENVELOPE_FLAG_SEALED),
            is_request=type_.startswith(REQUEST),
        )
        handler = self._handlers.get(msg.type)
        if handler is not None or msg.is_request:
            self._work_send.send_nowait((item, msg, handler))
        else:
            item.msg = msg
            item.order = next(self._order)
            self._queue.append(item)
            self._queue_lot.unpark()

    # ------------------------------------------------------- inbox bounds
    def on_released(self, link: Link, messages: int, size: int) -> None:
        """A session let go of held messages (consumed, or dropped from its reorder buffer)."""
        link.inbox_messages -= messages
        link.inbox_bytes -= size
        self.inbox_messages -= messages
        self.inbox_bytes -= size
        if link.reservation is not None:
            link.reservation.shrink(size)

    def _inbox_admit(self, link: Link, size: int) -> bool:
        """May ``link``'s peer make us hold ``size`` more bytes? (per-sender limits are the receiver's)."""
        cfg = self.config
        if self.inbox_messages >= cfg.inbox_max_messages or self.inbox_bytes + size > cfg.inbox_max_bytes:
            self.counters["inbox_total_full"] += 1
            return False
        res = link.reservation
        if res is not None and not res.grow(size):
            self.counters["inbox_memory_refused"] += 1
            return False
        self._inbox_hold(link, size)
        return True

    def _inbox_hold(self, link: Link, size: int) -> None:
        link.inbox_messages += 1
        link.inbox_bytes += size
        self.inbox_messages += 1
        self.inbox_bytes += size

    def on_notice(self, link: Link, kind: str) -> None:
        if kind == "session_churn":
            # A new session while max_sessions are known: honest peers start
            # one per restart; a stream of them is a reset flood.
            self.counters["session_churn"] += 1
            self.abuse(link.peer, "msg:session_churn", 1.0, "new session while %d are known",
                       link.session.receiver.max_sessions)
        elif kind == "inbox_full":
            self.counters["inbox_full_events"] += 1
            then = (
                "refusing, the sender is told (inbox full)" if link.session.receiver.durable
                else "dropping unacknowledged, the sender retransmits"
            )
            self._tlog.info(
                (str(link.peer), "inbox_full"),
                "messaging: inbox full for %s (%d messages, %d bytes held; node %d / %d): %s",
                link.peer, link.inbox_messages, link.inbox_bytes, self.inbox_messages, self.inbox_bytes, then,
            )

    def abuse(self, peer: ID, reason: str, weight: float, fmt: str, *args: Any) -> None:
        """Count an offence against ``peer`` and log it (throttled per peer and reason)."""
        self._tlog.warning((str(peer), reason), "messaging: %s from %s: " + fmt, reason, peer, *args)
        if self.ctx is not None:
            self.ctx.offence(peer, reason, weight)

    def _redeliver_restored(self, link: Link) -> None:
        for item in link.restored:
            plaintext = None
            if item.flags & ENVELOPE_FLAG_SEALED:
                try:
                    plaintext = open_envelope(item, self._key)
                except MessageRejected:
                    plaintext = b""
            self.counters["restored"] += 1
            link.redeliver(item, plaintext)
        link.restored = []

    def inspect(self, link: Link, envelopes: tuple[Envelope, ...], sizes: tuple[int, ...]) -> tuple[str | None, ...]:
        """The verdicts on a frame's new messages (a session's :class:`~.events.Inspect`).

        In order, for each: room in the node-wide inbox (once one does not
        fit, none after it does), then the screen; a rejected one is let go
        of at once, so the next one may take its room.
        """
        verdicts: list[str | None] = []
        full = False
        for env, size in zip(envelopes, sizes, strict=True):
            if full or not self._inbox_admit(link, size):
                full = True
                verdicts.append(INBOX_FULL)
                continue
            reason = self._screen(link, env)
            if reason is not None:
                self.on_released(link, 1, size)
            verdicts.append(reason)
        return tuple(verdicts)

    def _screen(self, link: Link, env: Envelope) -> str | None:
        """The gate for each new incoming message (see security/screen.py); opens sealed ones."""
        screen = self.screen
        assert screen is not None
        now_ms = int(time.time() * 1000)
        pre = link.preverified.pop(id(env), _UNCHECKED) if link.preverified else _UNCHECKED
        if pre is _UNCHECKED:
            reason = screen.check(env, stream_peer=link.peer_bytes, now_ms=now_ms)
        elif pre is not None:
            reason = pre  # type: ignore[assignment]
            screen.counters.add(reason)  # type: ignore[arg-type]
        else:
            reason = screen.guard.check(env.sender, env.id, env.timestamp_ms, now_ms)
            if reason is not None:
                screen.counters.add(reason)
        if reason is not None:
            self._tlog.info((str(link.peer), reason.value), "messaging: rejected %s from %s: %s",
                            env.id[:40], link.peer, reason.value)
            self._count_against(link.peer, reason)
            return reason.value
        if not self._permitted(link, env.type):
            self._tlog.info((str(link.peer), FORBIDDEN), "messaging: %s from %s refused by the policy: type %r",
                            env.id[:40], link.peer, env.type[:64])
            return FORBIDDEN
        if env.flags & ENVELOPE_FLAG_SEALED:
            try:
                link.opened[(env.session_id, env.seq)] = open_envelope(env, self._key)
            except MessageRejected as exc:
                screen.counters.add(exc.reason)
                self._tlog.info((str(link.peer), exc.reason.value), "messaging: rejected sealed %s from %s: %s",
                                env.id[:40], link.peer, exc)
                self._count_against(link.peer, exc.reason)
                return exc.reason.value
        return None

    def _count_against(self, peer: ID, reason: RejectReason) -> None:
        """A rejected message is an offence (penalty box, trust) in proportion to
        how sure we are it was not an honest fault (see REJECTION_WEIGHTS)."""
        weight = REJECTION_WEIGHTS.get(reason, 1.0)
        if not weight or self.ctx is None:
            return
        if reason is RejectReason.REPLAYED and not self._replay_charges.allow(peer)[0]:
            return
        self.ctx.offence(peer, "msg:" + reason.value, weight)

    def _permitted(self, link: Link, type_: str) -> bool:
        """May the link's peer send us a message of ``type_``? Replies always; a
        request is the ``call`` of its capability; anything else a ``send``,
        and also a ``call`` when a handler would take it."""
        auth = self._authorizer
        if auth is None or type_.startswith(REPLY_OK) or type_.startswith(REPLY_ERROR):
            return True
        if type_.startswith(REQUEST):
            return auth.check(link.peer, "call", type_[len(REQUEST):])
        if not auth.check(link.peer, "send", type_):
            return False
        # A handler takes plain messages of its type too: reaching it is a call.
        return type_ not in self._handlers or auth.check(link.peer, "call", type_)

    async def preverify(self, link: Link, frames: list[Frame]) -> None:
        """Before a frame's messages are vetted: the peer's certificates if the
        policy's decision needs them; a big batch's signatures in a worker thread."""
        auth = self._authorizer
        if auth is not None and (auth.pending(link.peer, "send") or auth.pending(link.peer, "call")):
            if any(f.WhichOneof("body") == "data" and f.data.messages for f in frames):
                await auth.resolve(link.peer)
        batch = self.config.verify_thread_batch
        if batch <= 0:
            return
        envs = [m for f in frames if f.WhichOneof("body") == "data" for m in f.data.messages]
        if len(envs) < batch:
            return
        results = await trio.to_thread.run_sync(_verify_batch, envs, link.peer_bytes, self._me)
        link.preverified = {id(e): r for e, r in zip(envs, results, strict=True)}
        self.counters["verified_in_thread"] += len(envs)

    def sign(self, env: Envelope) -> bytes:
        """Our signature of ``env`` (a session's :class:`~.events.Sign`)."""
        # sign_envelope() also re-derives our peer ID to check env.sender; we
        # set sender ourselves, so sign directly (saves ~30% per message).
        return self._key.sign(signing_bytes(env))  # type: ignore[no-any-return]

    # ------------------------------------------------------------- links
    def _out_link(self, peer: ID) -> Link:
        link = self._out.get(peer)
        if link is not None:
            return link
        nursery = self._require_running()
        cfg = self.config.session

        def make(link: Link) -> Session:
            if self.store is not None:
                sid, next_seq, rows = self.store.outgoing(link.peer_bytes, os.urandom(16))
                pending = [(env, wall_ms_to_clock(dl)) for env, dl in rows]
            else:
                sid, next_seq, pending = os.urandom(16), 1, []
            # Inspect too: what a peer sends on our stream is vetted like the rest.
            return Session(sid, cfg, next_seq=next_seq, pending=pending, sign=True, inspect=True)

        link = self._out[peer] = Link(self, peer, make, outgoing=True)
        nursery.start_soon(link.run_timer)
        link.apply([])  # restored messages: arm deadlines, dial
        return link

    def _in_link(self, peer: ID) -> Link | None:
        """The incoming link of ``peer`` (None: too many peers have state; refuse)."""
        link = self._in.get(peer)
        if link is not None:
            return link
        nursery = self._require_running()
        if len(self._in) >= self.config.max_incoming_peers and not self._forget_idle_in_link():
            self.counters["incoming_peers_full"] += 1
            self._tlog.warning(
                ("incoming_peers_full",), "messaging: %d peers hold incoming state; refusing %s",
                len(self._in), peer,
            )
            return None
        pb = peer.to_bytes()
        received = self.store.received(pb) if self.store is not None else None
        stored = self.store.inbox(pb) if self.store is not None else {}
        restored = {sid: [(e.seq, held_size(e)) for e in envs] for sid, envs in stored.items()}

        durable = self.store is not None

        def make(link: Link) -> Session:
            # With a store, the session acknowledges what the store holds
            # (receipt "stored") and reports a full inbox to the sender.
            return Session(
                os.urandom(16), self.config.session, received=received, restored=restored, inspect=True,
                durable=durable,
            )

        link = Link(self, peer, make, outgoing=False)
        link.reservation = self._resources.reservation(peer, "messaging")
        link.restored = [e for envs in stored.values() for e in envs]
        for env in link.restored:  # already held (the receiver counted them); limits apply to new ones
            size = held_size(env)
            self._inbox_hold(link, size)
            if link.reservation is not None:
                link.reservation.grow(size)  # a refusal only means less is reserved
        self._in[peer] = link
        nursery.start_soon(link.run_timer)
        if link.restored:
            self._redeliver_restored(link)
        return link

    def _forget_idle_in_link(self) -> bool:
        for peer, link in self._in.items():
            if link.idle:
                del self._in[peer]
                link.close()
                # Keeps stats()["inbox"]["refused_full"] a counter.
                self.counters["inbox_refused_forgotten"] += link.session.receiver.stats.inbox_full
                self.counters["incoming_links_forgotten"] += 1
                return True
        return False

    def _start_connection(self, link: Link, stream: Any, *, outbound: bool) -> None:
        nursery = self._require_running()
        cfg = self.config
        max_message = cfg.session.max_message_bytes
        conn = Connection(
            link, stream, outbound=outbound, read_chunk=cfg.read_chunk_bytes, write_batch=cfg.write_batch_bytes,
            max_frame=max_frame_for(max_message), max_message=max_message,
        )
        link.attach(conn)
        nursery.start_soon(conn.run)

    async def _on_stream(self, stream: Any) -> None:
        """Inbound /agentp2p/msg/1.0.0 stream: the peer's messages to us."""
        if self._nursery is None:
            # Only in the instant between listen and run(); the peer redials.
            await stream.reset()
            return
        peer = stream.muxed_conn.peer_id  # authenticated by Noise
        link = self._in_link(peer)
        if link is None:
            await stream.reset()
            return
        self.counters["streams_accepted"] += 1
        self._start_connection(link, stream, outbound=False)

    # ------------------------------------------------------------ dialing
    def want_connection(self, link: Link) -> None:
        """An outgoing link has unacked messages and no stream: dial (once)."""
        if link.dialing or self._nursery is None:
            return
        link.dialing = True
        self._nursery.start_soon(self._dial, link)

    async def _dial(self, link: Link) -> None:
        backoff = self.config.redial_initial
        try:
            assert self.ctx is not None  # running, so attached
            dialer = self.ctx.dialer
            while link.conn is None and link.session.wants_connection:
                try:
                    # Known addresses, then the DHT; concurrent dials to the peer shared.
                    stream = await dialer.open_stream(link.peer, [PROTOCOL_ID], timeout=self.config.dial_timeout)
                except Exception as exc:  # noqa: BLE001 - every failure means "retry later"
                    link.last_error = str(exc) or exc.__class__.__name__
                    self.counters["dial_failures"] += 1
                    seen = link.peer_seen
                    with trio.move_on_after(backoff):
                        await seen.wait()
                    backoff = min(backoff * 2, self.config.redial_max)
                    continue
                self.counters["streams_opened"] += 1
                self._start_connection(link, stream, outbound=True)
                return
        finally:
            link.dialing = False

    async def _watch_peers(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        """A new connection to a peer we are redialing: try at once."""
        async for ev in events:
            if ev.connected:
                link = self._out.get(ev.peer_id)
                if link is not None:
                    seen, link.peer_seen = link.peer_seen, trio.Event()
                    seen.set()

    async def _prune_forever(self) -> None:
        assert self.screen is not None
        guard = self.screen.guard
        while True:
            await trio.sleep(60)
            now_ms = int(time.time() * 1000)
            guard.prune(now_ms)
            if self.store is not None:
                self.store.prune_ids(now_ms - guard.max_age_ms)

    def busy_peers(self) -> list[ID]:
        """Peers with messages in flight either way (ours unacked, theirs
        unconsumed): the connection manager keeps their connections."""
        return ([p for p, link in self._out.items() if link.session.sender.unacked]
                + [p for p, link in self._in.items() if link.has_deliveries])

    # ------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """Counters for the node's stats: traffic, rejections by reason, link states."""
        out: dict[str, Any] = dict(self.counters)
        for key in ("sent", "acked", "stored", "failed", "delivered", "refused_inbox_full"):
            out.setdefault(key, 0)
        out["rejected"] = self.screen.counters.snapshot() if self.screen is not None else {}
        out["retransmitted"] = sum(link.session.sender.stats.retransmitted for link in self._out.values())
        out["delivery_latency"] = self.delivery_latency.as_dict()
        out["duplicates_dropped"] = sum(
            link.session.receiver.stats.duplicates for link in [*self._in.values(), *self._out.values()]
        )
        out["inbox"] = {
            "messages": self.inbox_messages,
            "bytes": self.inbox_bytes,
            "queued": len(self._queue),
            "unacknowledged": sum(len(v) for v in self._outstanding.values()),
            "peers_with_state": len(self._in),
            "refused_full": self.counters["inbox_refused_forgotten"]
            + sum(link.session.receiver.stats.inbox_full for link in self._in.values()),
            "durable": self.store is not None,
            "write_errors": self.counters["inbox_write_errors"],
            "consume_errors": self.counters["inbox_consume_errors"],
            "limits": {
                "messages_per_peer": self.config.session.receive_window,
                "bytes_per_peer": self.config.session.receive_bytes,
                "messages": self.config.inbox_max_messages,
                "bytes": self.config.inbox_max_bytes,
                "peers": self.config.max_incoming_peers,
            },
        }
        out["peers"] = {
            str(peer): {
                "unacked": link.session.sender.unacked,
                "state": link.session.state.value,
                "last_error": link.last_error,
            }
            for peer, link in self._out.items()
        }
        return out


class Incoming:
    """The iterator :meth:`MessagingService.incoming` returns (see there).

    Holds at most one unacknowledged message: the one last yielded. It is
    acknowledged on the next ``__anext__``, on :meth:`aclose` (also the
    ``async with`` exit), or when the iterator is garbage-collected — in
    CPython the moment an ``async for`` over it ends by ``break``.
    """

    def __init__(self, service: MessagingService) -> None:
        self._svc = service
        self._held: Delivery | None = None
        # The owner mark on taken messages: not ``self``, so that no reference
        # cycle delays __del__ (the ack after ``break``).
        self._token = object()

    def __aiter__(self) -> Incoming:
        return self

    async def __anext__(self) -> IncomingMessage:
        self._release()
        item = await self._svc._take(self._token)
        self._held = item
        return item.msg  # type: ignore[no-any-return]

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._svc._ack_item(held)

    async def aclose(self) -> None:
        self._release()

    async def __aenter__(self) -> Incoming:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001 - never raise from a finalizer (store closed at shutdown...)
            pass


def _check_type(type_: str) -> None:
    if not isinstance(type_, str) or not type_ or type_.startswith("~") or len(type_) > MAX_TYPE_CHARS:
        raise ValueError(f"message type must be 1..{MAX_TYPE_CHARS} characters, not starting with '~': {type_!r}")
