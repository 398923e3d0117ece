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

The library's behaviour and our workaround are each pinned by a test in
``tests/test_pubsub.py`` (item 4: ``tests/test_pubsub_hello_race.py``).
"""

from __future__ import annotations

import inspect
import logging
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

from agentp2p.config import PubSubConfig
from agentp2p.errors import PubSubError

log = logging.getLogger("agentp2p.pubsub")

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


Validator = Callable[[Message], bool | Awaitable[bool]]


class Subscription:
    """One consumer of a topic. Iterate it; leave its ``async with`` to unsubscribe."""

    def __init__(self, topic: str, capacity: int, stats: PubSubStats) -> None:
        self.topic = topic
        self.dropped = 0
        self._capacity = capacity
        self._stats = stats
        self._buf: deque[Message] = deque()
        self._ready = trio.Event()
        self._closed = False

    def _offer(self, msg: Message) -> None:
        if self._closed:
            return
        if len(self._buf) >= self._capacity:
            self.dropped += 1
            self._stats.dropped_inbound += 1
            return
        self._buf.append(msg)
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
        return self._buf.popleft()

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


class _RoomyQueues(dict):  # type: ignore[type-arg]
    """``Pubsub.peer_queues`` replacement: enlarges and instruments each new queue.

    The library creates every per-peer ``RpcQueue`` with a hard-coded default
    size of 32; intercepting the dict assignment is the one place we can
    resize it before any RPC is pushed. It is also the moment the peer
    becomes reachable for announcements, so ``on_new_queue`` re-announces
    our topics there (module doc, item 4).
    """

    def __init__(
        self, size: int, stats: PubSubStats, on_new_queue: Callable[[Any], None] | None = None
    ) -> None:
        super().__init__()
        self._size = size
        self._stats = stats
        self._on_new_queue = on_new_queue

    def __setitem__(self, peer_id: Any, queue: Any) -> None:
        queue._queue.max_size = self._size
        push = queue.push
        stats = self._stats

        def counting_push(rpc: Any, priority: bool = False) -> bool:
            ok = push(rpc, priority)
            if not ok:
                stats.dropped_outbound += 1
            return ok

        queue.push = counting_push
        super().__setitem__(peer_id, queue)
        if self._on_new_queue is not None:
            self._on_new_queue(queue)


class PubSub:
    """Owns py-libp2p's Pubsub + GossipSub for one node."""

    def __init__(self, host: IHost, config: PubSubConfig) -> None:
        self.config = config
        self.stats = PubSubStats()
        rate = config.max_messages_per_topic_per_second
        self.router = GossipSub(
            protocols=list(GOSSIPSUB_PROTOCOLS),
            degree=config.degree,
            degree_low=config.degree_low,
            degree_high=config.degree_high,
            heartbeat_interval=config.heartbeat_interval,  # type: ignore[arg-type]
            heartbeat_initial_delay=0.1,
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
        self.pubsub.peer_queues = _RoomyQueues(config.peer_queue_size, self.stats, self._announce_topics)
        self._sinks: dict[str, _TopicSink] = {}
        self._validators: dict[str, Validator] = {}
        self._topic_locks: dict[str, trio.Lock] = {}

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
            sub = Subscription(topic, self.config.subscription_buffer, self.stats)
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
        queues = self.pubsub.peer_queues
        if not queues:
            return 0.0
        return max(len(q) for q in queues.values()) / self.config.peer_queue_size

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
                log.warning("validator for %r raised %r; rejecting", topic, exc)
                ok = False
            if not ok:
                stats.rejected += 1
            return ok

        self.pubsub.set_topic_validator(topic, adapter, True)


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not topic or len(topic) > 256:
        raise ValueError("topic must be a non-empty string of at most 256 characters")
