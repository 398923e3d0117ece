"""Gossipsub topics behind an API that never loses messages silently.

py-libp2p 0.8.1's gossipsub drops in three places while ``publish()``
returns normally:

1. spam protection rejects more than 10 messages/s per topic, local
   publishes included;
2. each peer's outbound RPC queue holds 32 RPCs and drops the rest;
3. each subscription channel holds 32 messages and drops the rest.

What we do instead, without patching the library:

1. spam protection is off unless configured (``max_messages_per_topic_per_second``);
2. each peer queue is created with room for ``peer_queue_size`` RPCs, and
   :meth:`PubSub.publish` applies *backpressure*: it waits while any peer
   queue is above the high-water mark, and raises :class:`PubSubError` if it
   stays there for ``publish_timeout``. A queue that still overflows is
   counted in :attr:`PubSubStats.dropped_outbound`;
3. the library's per-topic channel is replaced by a :class:`_TopicSink` that
   fans out to any number of local :class:`Subscription` objects, each with a
   ``subscription_buffer``-sized buffer; overflow is counted per subscription
   and in :attr:`PubSubStats.dropped_inbound`.

4. a subscription made while a peer's pubsub stream is being set up is
   never announced to that peer: the library builds the peer's "hello"
   (our topics), awaits the write, and only then registers the peer, while
   ``subscribe()`` announces to registered peers only. The peer then never
   sends us the topic. :class:`_RoomyQueues` re-announces every current
   topic on the new peer's queue the moment it is created (synchronously, so
   nothing can slip in between). Found against go-libp2p; see docs/interop.md.

5. the library processes each received message in a *service task*
   (``Pubsub.push_msg`` via ``manager.run_task``) and GossipSub control
   messages, subscriptions and the hooks they trigger likewise: an exception
   there cancels the whole pub/sub service and the node with it. One message
   whose ``key`` is not a parsable public key does exactly that
   (``signature_validator`` re-raises the deserialisation error). We wrap each
   of these entry points on the instances (:meth:`PubSub._contain`): a
   failure drops that message or control RPC, is counted in
   :attr:`PubSubStats.contained` and is an offence of the peer that sent it.
   Signatures are checked by us first, without raising; an invalid one is
   counted in :attr:`PubSubStats.invalid_signatures` and is an offence of the
   *forwarder* (an honest relay validates before forwarding). Each forwarder
   gets a token bucket (``inbound_rate_per_peer``/``inbound_burst_per_peer``);
   the excess is dropped and counted in :attr:`PubSubStats.rate_limited`.

6. memory: a Subscription is bounded by bytes as well as messages
   (``subscription_buffer_bytes``), and each peer's outbound queue by bytes
   as well as RPCs (``peer_queue_bytes``, reserved from the node's resource
   manager as service ``"pubsub"``); overflow is counted like a full queue.
   Publish backpressure watches both.

Log lines about peers go through :class:`~agentp2p.throttled_log.ThrottledLog`:
everything is counted, at most one line per (peer, reason) per interval.

The library's behaviour and our workaround are each pinned by a test in
``tests/test_pubsub.py`` (item 4: ``tests/test_pubsub_hello_race.py``).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import PriorityQueue
from libp2p.pubsub.validators import signature_validator

from agentp2p.config import PubSubConfig
from agentp2p.errors import PubSubError
from agentp2p.network.ratelimit import PeerRateLimiter
from agentp2p.throttled_log import ThrottledLog

log = logging.getLogger("agentp2p.pubsub")

#: Offence weights (the penalty box bans at 20 points, halving each minute).
BAD_SIGNATURE_WEIGHT = 1.0
FAILURE_WEIGHT = 2.0
RATE_LIMITED_WEIGHT = 0.05

OffenceFn = Callable[[Any, str, float], None]

GOSSIPSUB_PROTOCOLS = [PROTOCOL_ID_V11, PROTOCOL_ID]


@dataclass(frozen=True)
class Message:
    """A message received on a topic. ``sender`` is verified (strict signing)."""

    topic: str
    data: bytes
    sender: ID
    seqno: bytes


@dataclass
class PubSubStats:
    published: int = 0
    delivered: int = 0
    dropped_inbound: int = 0  # a local subscriber's buffer was full
    dropped_outbound: int = 0  # a peer's outbound queue was full
    rejected: int = 0  # a topic validator said no (or raised)
    backpressure_waits: int = 0
    invalid_signatures: int = 0  # a received message failed signature checks
    contained: int = 0  # processing a peer's message or control RPC raised
    rate_limited: int = 0  # a forwarder exceeded inbound_rate_per_peer


Validator = Callable[[Message], bool | Awaitable[bool]]


class Subscription:
    """One consumer of a topic. Iterate it; leave its ``async with`` to unsubscribe."""

    def __init__(self, topic: str, capacity: int, stats: PubSubStats, max_bytes: int | None = None) -> None:
        self.topic = topic
        self.dropped = 0
        self._capacity = capacity
        self._max_bytes = max_bytes
        #: Bytes of message data held (bounded by ``subscription_buffer_bytes``).
        self.buffered_bytes = 0
        self._stats = stats
        self._buf: deque[Message] = deque()
        self._ready = trio.Event()
        self._closed = False

    def _offer(self, msg: Message) -> None:
        if self._closed:
            return
        n = len(msg.data)
        if len(self._buf) >= self._capacity or (
            self._max_bytes is not None and self.buffered_bytes + n > self._max_bytes
        ):
            self.dropped += 1
            self._stats.dropped_inbound += 1
            return
        self._buf.append(msg)
        self.buffered_bytes += n
        self._stats.delivered += 1
        self._ready.set()

    def _close(self) -> None:
        self._closed = True
        self._ready.set()

    def pending(self) -> int:
        return len(self._buf)

    async def receive(self) -> Message:
        """The next message; raises ``trio.EndOfChannel`` once unsubscribed and drained."""
        while not self._buf:
            if self._closed:
                raise trio.EndOfChannel
            self._ready = trio.Event()
            await self._ready.wait()
        msg = self._buf.popleft()
        self.buffered_bytes -= len(msg.data)
        return msg

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class _TopicSink:
    """Stands in for the library's per-topic memory channel (duck-typed)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.subscribers: list[Subscription] = []

    def send_nowait(self, raw: Any) -> None:
        msg = Message(
            topic=self.topic,
            data=bytes(raw.data),
            sender=ID(raw.from_id),
            seqno=bytes(raw.seqno),
        )
        for sub in self.subscribers:
            sub._offer(msg)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        for sub in self.subscribers:
            sub._close()


class _BoundedQueue(PriorityQueue):
    """The library's per-peer priority queue, bounded by bytes as well as RPCs.

    Installed as ``RpcQueue._queue`` of every peer queue. Each pushed RPC's
    serialised size is reserved from the resource manager (service
    ``"pubsub"``, that peer) and released when it is popped or the queue is
    closed; a push that would pass ``max_bytes`` or that the manager refuses
    is rejected like a full queue (the caller counts it).
    """

    def __init__(self, max_size: int, max_bytes: int, reservation: Any = None) -> None:
        super().__init__(max_size)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._reservation = reservation
        self._sizes: deque[int] = deque()
        self._priority_sizes: deque[int] = deque()
        #: When the peer last took an RPC (or the queue last became non-empty).
        self.last_progress = time.monotonic()

    def stalled_for(self, now: float) -> float:
        """Seconds this non-empty queue has not drained (0 when empty)."""
        return now - self.last_progress if len(self) else 0.0

    def push(self, rpc: rpc_pb2.RPC, priority: bool = False) -> bool:
        if len(self) >= self.max_size:
            return False
        n = rpc.ByteSize()
        if self.bytes + n > self.max_bytes:
            return False
        if self._reservation is not None and not self._reservation.grow(n):
            return False
        if not len(self):
            self.last_progress = time.monotonic()
        if priority:
            self._priority.append(rpc)
            self._priority_sizes.append(n)
        else:
            self._non_priority.append(rpc)
            self._sizes.append(n)
        self.bytes += n
        return True

    def pop(self) -> rpc_pb2.RPC | None:
        if self._priority:
            rpc, sizes = self._priority.popleft(), self._priority_sizes
        elif self._non_priority:
            rpc, sizes = self._non_priority.popleft(), self._sizes
        else:
            return None
        n = sizes.popleft() if sizes else 0
        self.bytes -= n
        self.last_progress = time.monotonic()
        if self._reservation is not None:
            self._reservation.shrink(n)
        return rpc

    def clear(self) -> None:
        """Forget everything queued and give the reserved bytes back."""
        self._priority.clear()
        self._non_priority.clear()
        self._sizes.clear()
        self._priority_sizes.clear()
        self.bytes = 0
        if self._reservation is not None:
            self._reservation.close()


class _RoomyQueues(dict):  # type: ignore[type-arg]
    """``Pubsub.peer_queues`` replacement: enlarges, bounds and instruments each new queue.

    The library creates every per-peer ``RpcQueue`` with a hard-coded default
    size of 32; intercepting the dict assignment is the one place we can
    resize it before any RPC is pushed. We give it room for ``size`` RPCs
    but at most ``max_bytes`` bytes (module doc, item 6). It is also the
    moment the peer becomes reachable for announcements, so ``on_new_queue``
    re-announces our topics there (module doc, item 4).
    """

    def __init__(
        self,
        size: int,
        stats: PubSubStats,
        on_new_queue: Callable[[Any], None] | None = None,
        max_bytes: int = 16 << 20,
        resources: Any = None,
    ) -> None:
        super().__init__()
        self._size = size
        self._max_bytes = max_bytes
        self._resources = resources
        self._stats = stats
        self._on_new_queue = on_new_queue

    def __setitem__(self, peer_id: Any, queue: Any) -> None:
        reservation = self._resources.reservation(peer_id, "pubsub") if self._resources is not None else None
        bounded = _BoundedQueue(self._size, self._max_bytes, reservation)
        # Anything the library queued already (nothing, today) moves over.
        while (rpc := queue._queue.pop()) is not None:
            bounded.push(rpc)
        queue._queue = bounded
        push = queue.push
        close = queue.close
        stats = self._stats

        def counting_push(rpc: Any, priority: bool = False) -> bool:
            ok = push(rpc, priority)
            if not ok and not queue.closed:
                stats.dropped_outbound += 1
            return ok

        def releasing_close() -> None:
            close()
            bounded.clear()

        queue.push = counting_push
        queue.close = releasing_close
        old = self.get(peer_id)
        super().__setitem__(peer_id, queue)
        if old is not None and old is not queue:
            old.close()
        if self._on_new_queue is not None:
            self._on_new_queue(queue)


def _signature_ok(msg: rpc_pb2.Message) -> bool:
    """py-libp2p's ``signature_validator``, minus its exceptions (garbage ``key`` raises)."""
    try:
        return bool(signature_validator(msg))
    except Exception:  # noqa: BLE001 — any failure to verify is an invalid signature
        return False


class PubSub:
    """Owns py-libp2p's Pubsub + GossipSub for one node."""

    def __init__(
        self,
        host: IHost,
        config: PubSubConfig,
        *,
        resources: Any = None,
        offence: OffenceFn | None = None,
    ) -> None:
        self.config = config
        self.stats = PubSubStats()
        self._resources = resources
        self._offence = offence
        self._log = ThrottledLog(log, interval=30.0)
        self._inbound = PeerRateLimiter(config.inbound_rate_per_peer, config.inbound_burst_per_peer)
        rate = config.max_messages_per_topic_per_second
        self.router = GossipSub(
            protocols=list(GOSSIPSUB_PROTOCOLS),
            degree=config.degree,
            degree_low=config.degree_low,
            degree_high=config.degree_high,
            heartbeat_interval=config.heartbeat_interval,  # type: ignore[arg-type]
            heartbeat_initial_delay=0.1,
            # py-libp2p's "adaptive gossip" (on by default) re-rates network
            # health every 30 s and, on a small mesh, stretches the heartbeat
            # to 30-60 s: the message cache then spans ~90 s and a new
            # subscriber is sent that much old history (send_recent_messages).
            # The heartbeat stays the configured one.
            adaptive_gossip_enabled=False,
            spam_protection_enabled=rate is not None,
            max_messages_per_topic_per_second=rate if rate is not None else 10.0,
            # Messages for connected peers whose subscription has not arrived
            # yet wait here; the library keeps 100 and warns on every drop.
            max_pending_messages_per_peer=config.peer_queue_size,
            pending_messages_ttl=config.pending_ttl,
        )
        # Constructing Pubsub registers its stream handlers on the host; the
        # node must start this service before the host accepts connections.
        self.pubsub = Pubsub(
            host,
            self.router,
            strict_signing=True,
            seen_ttl=config.seen_ttl,
            max_inbound_rpc_size=config.max_message_size + 64 * 1024,
        )
        self.pubsub.peer_queues = _RoomyQueues(
            config.peer_queue_size,
            self.stats,
            self._announce_topics,
            max_bytes=config.peer_queue_bytes,
            resources=resources,
        )
        self._contain()
        self._sinks: dict[str, _TopicSink] = {}
        self._validators: dict[str, Validator] = {}
        self._topic_locks: dict[str, trio.Lock] = {}

    # -- containment (module doc, item 5) -------------------------------------

    def _report(self, peer: Any, reason: str, weight: float, detail: Any = None) -> None:
        """Throttled log line and an offence of ``peer`` (never ourselves)."""
        if peer is None or peer == self.pubsub.my_id:
            return
        self._log.warning((str(peer), reason), "pubsub: %s from peer %s%s", reason, peer,
                          f": {detail!r}" if detail is not None else "")
        if self._offence is not None:
            self._offence(peer, f"pubsub:{reason}", weight)

    def _contain(self) -> None:
        """Wrap every library entry point that processes a peer's input.

        Instance attributes only: the library looks each of them up on the
        instance when it calls or spawns it (``self.push_msg``,
        ``self.router.handle_rpc``, ...), so nothing in site-packages changes.
        """
        ps, router = self.pubsub, self.router
        stats = self.stats
        push_msg = ps.push_msg

        async def guarded_push_msg(forwarder: ID, msg: rpc_pb2.Message) -> None:
            if forwarder == ps.my_id:
                await push_msg(forwarder, msg)  # our own publish: errors reach the caller
                return
            try:
                if not self._inbound.allow(forwarder, time.monotonic()):
                    stats.rate_limited += 1
                    self._report(forwarder, "rate-limited", RATE_LIMITED_WEIGHT)
                    return
                if ps._is_msg_seen(msg):
                    return  # a duplicate: the library would drop it too, before verifying
                if ps.strict_signing and not _signature_ok(msg):
                    stats.invalid_signatures += 1
                    self._report(forwarder, "invalid-signature", BAD_SIGNATURE_WEIGHT)
                    return
                await push_msg(forwarder, msg)
            except Exception as exc:  # noqa: BLE001 — one message must not stop the service
                stats.contained += 1
                self._report(forwarder, "message-failed", FAILURE_WEIGHT, exc)

        ps.push_msg = guarded_push_msg  # type: ignore[method-assign]

        handle_subscription = ps.handle_subscription

        def guarded_subscription(origin: ID, sub: Any) -> None:
            try:
                handle_subscription(origin, sub)
            except Exception as exc:  # noqa: BLE001
                stats.contained += 1
                self._report(origin, "subscription-failed", FAILURE_WEIGHT, exc)

        ps.handle_subscription = guarded_subscription  # type: ignore[method-assign]

        def guard_async(obj: Any, name: str, reason: str) -> None:
            inner = getattr(obj, name)

            async def guarded(*args: Any) -> None:
                try:
                    await inner(*args)
                except Exception as exc:  # noqa: BLE001
                    stats.contained += 1
                    peer = next((a for a in args if isinstance(a, ID)), None)
                    self._report(peer, reason, FAILURE_WEIGHT, exc)
                    if peer is None:
                        self._log.warning(("-", reason), "pubsub: %s: %r", reason, exc)

            guarded.__wrapped__ = inner  # type: ignore[attr-defined]
            setattr(obj, name, guarded)

        # Control RPCs (IHAVE/IWANT/GRAFT/PRUNE/...), inline in the read loop.
        guard_async(router, "handle_rpc", "control-failed")
        # Spawned as service tasks when a peer subscribes.
        guard_async(router, "flush_pending_messages", "flush-failed")
        guard_async(router, "on_peer_subscribed", "graft-failed")
        guard_async(ps, "_replay_recent_messages", "replay-failed")

        # The heartbeat works on state peers built (mesh, fanout, backoffs);
        # a failure there restarts it instead of stopping the router.
        heartbeat = router.heartbeat

        async def resilient_heartbeat() -> None:
            while True:
                try:
                    await heartbeat()
                except Exception as exc:  # noqa: BLE001
                    stats.contained += 1
                    self._log.warning(("-", "heartbeat"), "pubsub: heartbeat failed, restarting: %r", exc)
                    await trio.sleep(self.config.heartbeat_interval)

        router.heartbeat = resilient_heartbeat  # type: ignore[method-assign]

    # -- subscriptions --------------------------------------------------------

    def _announce_topics(self, queue: Any) -> None:
        """Queue a SUBSCRIBE for every topic we hold to a peer that just became writable.

        Closes the library's hello race (module doc, item 4). Runs inside the
        library's peer registration with no await in between, so every later
        (un)subscribe announcement is queued after this one, in order. A
        repeated SUBSCRIBE is a no-op for the peer; with no topics we send
        nothing.
        """
        topics = list(self.pubsub.topic_ids)
        if topics:
            queue.push(rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=t) for t in topics]))

    def _lock(self, topic: str) -> trio.Lock:
        return self._topic_locks.setdefault(topic, trio.Lock())

    async def open_subscription(self, topic: str) -> Subscription:
        _check_topic(topic)
        async with self._lock(topic):
            sink = self._sinks.get(topic)
            if sink is None:
                await self.pubsub.subscribe(topic)
                sink = _TopicSink(topic)
                self.pubsub.subscribed_topics_send[topic] = sink  # type: ignore[assignment]
                self._sinks[topic] = sink
            sub = Subscription(
                topic, self.config.subscription_buffer, self.stats, self.config.subscription_buffer_bytes
            )
            sink.subscribers.append(sub)
            return sub

    async def close_subscription(self, sub: Subscription) -> None:
        async with self._lock(sub.topic):
            sub._close()
            sink = self._sinks.get(sub.topic)
            if sink is None or sub not in sink.subscribers:
                return
            sink.subscribers.remove(sub)
            if not sink.subscribers:
                del self._sinks[sub.topic]
                await self.pubsub.unsubscribe(sub.topic)

    def topics(self) -> list[str]:
        return sorted(self._sinks)

    def topic_peers(self, topic: str) -> list[ID]:
        return sorted(self.pubsub.peer_topics.get(topic, set()), key=str)

    # -- publishing -----------------------------------------------------------

    def _max_queue_fill(self) -> float:
        """The fullest peer queue's fill, by RPCs or by bytes, whichever is higher.

        A queue that has not drained at all for twice ``publish_timeout`` is
        left out: that peer stopped reading, a publish already timed out on
        it, and waiting for it would let one peer stop every publish of ours.
        Its queue overflows instead (bounded, counted in ``dropped_outbound``).
        """
        queues = self.pubsub.peer_queues
        if not queues:
            return 0.0
        size, max_bytes = self.config.peer_queue_size, self.config.peer_queue_bytes
        stuck_after = 2 * self.config.publish_timeout
        now = time.monotonic()
        fill = 0.0
        for q in queues.values():
            inner = q._queue
            if isinstance(inner, _BoundedQueue) and inner.stalled_for(now) > stuck_after:
                continue
            fill = max(fill, len(q) / size, getattr(inner, "bytes", 0) / max_bytes)
        return fill

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data``; waits (backpressure) rather than letting queues overflow."""
        _check_topic(topic)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("pubsub data must be bytes")
        if len(data) > self.config.max_message_size:
            raise PubSubError(f"message of {len(data)} bytes exceeds max_message_size={self.config.max_message_size}")
        high = self.config.backpressure_high_water
        if self._max_queue_fill() > high:
            self.stats.backpressure_waits += 1
            with trio.move_on_after(self.config.publish_timeout) as scope:
                while self._max_queue_fill() > high:
                    # Queues drain as the per-peer writer tasks run; there is no
                    # drain event in the library to wait on, so poll briefly.
                    await trio.sleep(0.002)
            if scope.cancelled_caught:
                raise PubSubError(
                    f"publish to {topic!r} timed out after {self.config.publish_timeout}s: "
                    "peers are not draining their queues"
                )
        try:
            await self.pubsub.publish(topic, bytes(data))
        except Exception as exc:
            raise PubSubError(f"publish to {topic!r} failed: {exc}") from exc
        self.stats.published += 1

    # -- validation -----------------------------------------------------------

    def set_validator(self, topic: str, validator: Validator | None) -> None:
        """Accept or reject each incoming (and local) message on ``topic``.

        A validator that raises rejects the message; it never reaches the host.
        """
        _check_topic(topic)
        if validator is None:
            self.pubsub.remove_topic_validator(topic)
            return
        stats = self.stats

        async def adapter(peer_id: ID, raw: Any) -> bool:
            msg = Message(topic, bytes(raw.data), ID(raw.from_id), bytes(raw.seqno))
            try:
                verdict = validator(msg)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                ok = bool(verdict)
            except Exception as exc:  # noqa: BLE001
                self._log.warning((topic, "validator-raised"), "validator for %r raised %r; rejecting", topic, exc)
                ok = False
            if not ok:
                stats.rejected += 1
            return ok

        self.pubsub.set_topic_validator(topic, adapter, True)


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not topic or len(topic) > 256:
        raise ValueError("topic must be a non-empty string of at most 256 characters")
