"""Reliable, ordered, signed direct messaging on a node (/agentp2p/msg/1.0.0).

The behaviour half (rust-libp2p's NetworkBehaviour) of messaging: it decides
*what* happens — which session a message joins, when to dial (and find the
peer in the DHT), what a delivery means for the application — while
:mod:`.connection` moves the bytes and :mod:`.session` (sans-IO) decides
everything about sequence numbers, ACKs and retransmission.

Per remote peer there are up to two :class:`~.link.Link`s, one per
direction (see :mod:`.link` for why each stream is owned by its opener).

Guarantees (details in docs/messaging.md):

* ``await send(...)`` returns once the peer's *application* took the message
  (ACKs follow consumption), or raises :class:`DeliveryTimeout` at the
  caller's deadline. Across dropped connections, messages of one sender
  reach the receiver's application exactly once and in send order.
* With ``store_path`` (SQLite), an accepted message survives a restart of
  the sender and is delivered after it; a restarted receiver never delivers
  a message twice.
* Every message is signed with the sender's identity key, and delivered
  only if the signature verifies, the claimed sender is the Noise-authenticated
  stream peer, it is addressed to us and its id was not seen before;
  rejections are counted by reason (``stats()["rejected"]``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from agentp2p.errors import NotRunningError
from agentp2p.network.addresses import to_peer_id
from agentp2p.messaging.config import PROTOCOL_ID, MessagingConfig
from agentp2p.messaging.connection import Connection
from agentp2p.messaging.errors import DeliveryError, DeliveryTimeout, RemoteHandlerError, RequestTimeout
from agentp2p.messaging.events import Send
from agentp2p.messaging.link import Delivery, Link, SendWaiter, wall_ms_to_clock
from agentp2p.messaging.message import REPLY_ERROR, REPLY_OK, REQUEST, IncomingMessage
from agentp2p.messaging.outbox import Outbox
from agentp2p.messaging.sender import MessageTooLarge
from agentp2p.messaging.session import Session
from agentp2p.messaging.window import WindowFull
from agentp2p.pb.msg_pb2 import ENVELOPE_FLAG_SEALED, Envelope, Frame
from agentp2p.security.rejections import MessageRejected, RejectCounters, RejectReason
from agentp2p.security.screen import InboundScreen
from agentp2p.security.sealing import open_envelope, seal_envelope
from agentp2p.security.signing import signing_bytes, verify_envelope

if TYPE_CHECKING:
    from agentp2p.node import Node

log = logging.getLogger("agentp2p.messaging")

__all__ = ["Handler", "IncomingMessage", "MessagingConfig", "MessagingService", "PROTOCOL_ID"]

Handler = Callable[[IncomingMessage], Awaitable[bytes | None]]

#: Longest application type: the request prefix must still fit the signed type field.
MAX_TYPE_CHARS = 200
_UNCHECKED = object()


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
        self.node: Node | None = None
        self.screen: InboundScreen | None = None
        self._out: dict[ID, Link] = {}
        self._in: dict[ID, Link] = {}
        self._handlers: dict[str, Handler] = {}
        self._replies: dict[str, _ReplyWaiter] = {}
        self._nursery: trio.Nursery | None = None
        self._started = trio.Event()
        self._stopped = False
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[tuple[Delivery, IncomingMessage]](math.inf)
        self._work_send, self._work_recv = trio.open_memory_channel[
            tuple[Delivery, IncomingMessage, Handler | None]
        ](math.inf)

    # ---------------------------------------------------------- lifecycle
    def attach(self, node: Node) -> None:
        self.node = node
        self._my_id = node.peer_id  # Identity.peer_id re-derives the ID on every access
        self._me = self._my_id.to_bytes()
        self._key = node.identity.private_key
        self.screen = InboundScreen(node.peer_id, counters=RejectCounters())
        if self.store_path is not None:
            self.store = Outbox(self.store_path, durable=self.config.durable_sync)
            guard = self.screen.guard
            for sender, msg_id, ts in self.store.recent_ids(int(time.time() * 1000) - guard.max_age_ms):
                guard.remember(sender, msg_id, ts)
        node.set_stream_handler(PROTOCOL_ID, self._on_stream)

    async def run(self, node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. Supports ``nursery.start`` (started once usable)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch_peers, node.events.subscribe())
                nursery.start_soon(self._dispatch_handlers)
                nursery.start_soon(self._prune_forever)
                if self.store is not None:
                    # Messages accepted before a restart: resume their sessions;
                    # each link dials because it wants a connection.
                    for peer in self.store.peers_with_pending():
                        self._out_link(ID(peer))
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
        if self._nursery is None and not self._stopped and self.node is not None:
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
    ) -> str:
        """Send ``payload`` to ``peer``; return its message id once the peer's application has it.

        Dials (and looks the peer up in the DHT) as needed, and keeps retrying
        until ``timeout`` seconds have passed, then raises
        :class:`DeliveryTimeout`. ``seal=True`` encrypts the payload to the
        peer's key (end to end). Messages are delivered in the order their
        ``send`` calls were accepted. Cancelling the caller does not withdraw
        the message: it was accepted and is still delivered if possible.
        """
        _check_type(type)
        deadline = trio.current_time() + timeout
        return await self._send(to_peer_id(peer), payload, type, deadline, seal)

    def _accept(self, link: Link, env: Envelope, deadline: float) -> list[Any]:
        now = trio.current_time()
        link.accept_deadline_ms = int((time.time() + deadline - now) * 1000)
        try:
            return link.session.handle(now, Send(env, deadline))
        except MessageTooLarge as exc:
            raise DeliveryError(str(exc)) from None

    async def _send(
        self, pid: ID, payload: bytes, type_: str, deadline: float, seal: bool, msg_id: str | None = None
    ) -> str:
        await self._ready()
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
            actions = self._accept(link, env, deadline)
        except WindowFull:
            # One waiter at a time watches the window (trio.Lock is fair), so
            # a full window costs one wake-up per opening, not one per caller.
            self.counters["window_waits"] += 1
            with trio.move_on_at(deadline):
                async with link.window_queue:
                    while True:
                        try:
                            actions = self._accept(link, env, deadline)
                            break
                        except WindowFull:
                            await link.window_open.wait()
            if not env.seq:
                raise DeliveryTimeout(f"send window to {pid} stayed full until the deadline") from None
        seq = env.seq
        waiter = SendWaiter()
        link.waiters[seq] = waiter
        self.counters["sent"] += 1
        link.apply(actions)
        try:
            await waiter.event.wait()
        finally:
            if link.waiters.get(seq) is waiter:
                del link.waiters[seq]
        if waiter.acked:
            return env.id
        if waiter.reason == "stopped":
            raise DeliveryError(f"messaging stopped before {pid} acknowledged message {env.id}")
        detail = f" (last error: {link.last_error})" if link.last_error else ""
        raise DeliveryTimeout(f"{pid} did not acknowledge message {env.id} before the deadline{detail}")

    # ----------------------------------------------------------- receiving
    async def incoming(self) -> AsyncIterator[IncomingMessage]:
        """Messages for which no handler is set, in order per sender.

        A message counts as consumed (and is acknowledged to its sender) when
        this iterator yields it. Several iterators may run; each message goes
        to one of them.
        """
        async for item, msg in self._inbox_recv:
            item.link.consumed(item)
            yield msg

    async def receive(self) -> IncomingMessage:
        """The next incoming message (one step of :meth:`incoming`)."""
        item, msg = await self._inbox_recv.receive()
        item.link.consumed(item)
        return msg

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
            self._inbox_send.send_nowait((item, msg))

    def _inspect(self, link: Link, env: Envelope) -> str | None:
        """The session's gate for each new incoming message (see security/screen.py)."""
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
            log.info("messaging: rejected %s from %s: %s", env.id[:40], link.peer, reason.value)
            return reason.value
        if env.flags & ENVELOPE_FLAG_SEALED:
            try:
                link.opened[(env.session_id, env.seq)] = open_envelope(env, self._key)
            except MessageRejected as exc:
                screen.counters.add(exc.reason)
                log.info("messaging: rejected sealed %s from %s: %s", env.id[:40], link.peer, exc)
                return exc.reason.value
        return None

    async def preverify(self, link: Link, frames: list[Frame]) -> None:
        """Verify a big batch of signatures in a worker thread (optional, see config)."""
        batch = self.config.verify_thread_batch
        if batch <= 0:
            return
        envs = [m for f in frames if f.WhichOneof("body") == "data" for m in f.data.messages]
        if len(envs) < batch:
            return
        results = await trio.to_thread.run_sync(_verify_batch, envs, link.peer_bytes, self._me)
        link.preverified = {id(e): r for e, r in zip(envs, results, strict=True)}
        self.counters["verified_in_thread"] += len(envs)

    def _sign(self, env: Envelope) -> None:
        # sign_envelope() also re-derives our peer ID to check env.sender; we
        # set sender ourselves, so sign directly (saves ~30% per message).
        env.signature = self._key.sign(signing_bytes(env))

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
            return Session(
                sid, cfg, next_seq=next_seq, pending=pending, finalize=self._sign,
                inspect=lambda env: self._inspect(link, env),
            )

        link = self._out[peer] = Link(self, peer, make, outgoing=True)
        nursery.start_soon(link.run_timer)
        link.apply([])  # restored messages: arm deadlines, dial
        return link

    def _in_link(self, peer: ID) -> Link:
        link = self._in.get(peer)
        if link is not None:
            return link
        nursery = self._require_running()
        received = self.store.received(peer.to_bytes()) if self.store is not None else None

        def make(link: Link) -> Session:
            return Session(
                os.urandom(16), self.config.session, received=received,
                inspect=lambda env: self._inspect(link, env),
            )

        link = self._in[peer] = Link(self, peer, make, outgoing=False)
        nursery.start_soon(link.run_timer)
        return link

    def _start_connection(self, link: Link, stream: Any, *, outbound: bool) -> None:
        nursery = self._require_running()
        cfg = self.config
        conn = Connection(
            link, stream, outbound=outbound, read_chunk=cfg.read_chunk_bytes, write_batch=cfg.write_batch_bytes
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
        self.counters["streams_accepted"] += 1
        self._start_connection(self._in_link(peer), stream, outbound=False)

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
            while link.conn is None and link.session.wants_connection:
                try:
                    stream = await self._open_stream(link.peer)
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

    async def _open_stream(self, peer: ID) -> Any:
        node = self.node
        assert node is not None
        with trio.fail_after(self.config.dial_timeout):
            if not node.is_connected(peer):
                await self._connect(peer)
            return await node.host.new_stream(peer, [TProtocol(PROTOCOL_ID)])

    async def _connect(self, peer: ID) -> None:
        """Known addresses first, then a DHT lookup."""
        node = self.node
        assert node is not None
        try:
            addrs = node.host.get_peerstore().addrs(peer)
        except Exception:  # noqa: BLE001 - unknown peer
            addrs = []
        first_error: Exception | None = None
        if addrs:
            try:
                await node.connect(PeerInfo(peer, addrs))
                return
            except Exception as exc:  # noqa: BLE001
                first_error = exc
        self.counters["dht_lookups"] += 1
        info = await node.find_peer(peer)
        if info is None or not info.addrs:
            raise DeliveryError(
                f"peer {peer} is not connected and not found in the DHT"
                + (f" (known addresses failed: {first_error})" if first_error else "")
            )
        await node.connect(info)

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

    # ------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """Counters for the node's stats: traffic, rejections by reason, link states."""
        out: dict[str, Any] = dict(self.counters)
        for key in ("sent", "acked", "failed", "delivered"):
            out.setdefault(key, 0)
        out["rejected"] = self.screen.counters.snapshot() if self.screen is not None else {}
        out["retransmitted"] = sum(link.session.sender.stats.retransmitted for link in self._out.values())
        out["duplicates_dropped"] = sum(
            link.session.receiver.stats.duplicates for link in [*self._in.values(), *self._out.values()]
        )
        out["peers"] = {
            str(peer): {
                "unacked": link.session.sender.unacked,
                "state": link.session.state.value,
                "last_error": link.last_error,
            }
            for peer, link in self._out.items()
        }
        return out


def _check_type(type_: str) -> None:
    if not isinstance(type_, str) or not type_ or type_.startswith("~") or len(type_) > MAX_TYPE_CHARS:
        raise ValueError(f"message type must be 1..{MAX_TYPE_CHARS} characters, not starting with '~': {type_!r}")
