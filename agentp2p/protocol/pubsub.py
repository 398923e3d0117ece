"""Pub/sub topics behind an API that never loses messages silently.

The router is ours: a sans-IO gossipsub v1.1/v1.2 core with peer scoring
(:mod:`agentp2p.protocol.gossipsub`) run on the node's streams by
:class:`~agentp2p.protocol.gossipsub.service.GossipSubService`. This module
is what the rest of agentp2p sees: topics, subscriptions, validators,
publishing with backpressure, and the counters. py-libp2p's ``Pubsub`` and
``GossipSub`` are not used (nor their workarounds: no spam limit to switch
off, no queue to enlarge, no hello race, no library task to contain).

The promises:

* **No silent drops.** ``publish()`` waits (*backpressure*) while any peer's
  outbound queue is fuller than ``backpressure_high_water`` (by RPCs,
  ``peer_queue_size``, or bytes, ``peer_queue_bytes``, reserved from the
  resource manager as service ``"pubsub"``), and raises
  :class:`~agentp2p.errors.PubSubError` if that lasts ``publish_timeout``. A
  queue that has not drained at all for 2 x ``publish_timeout`` (a peer that
  stopped reading) no longer holds publishes up; what overflows it is
  counted in ``dropped_outbound``. Each local :class:`Subscription` holds
  ``subscription_buffer`` messages and ``subscription_buffer_bytes`` bytes;
  when full, its oldest messages are dropped (so the newest can always be
  read, and a reader that reports drops as it reads never misses one),
  counted per subscription and in ``dropped_inbound``.
* **Validators** (:meth:`PubSub.set_validator`): sync or async, returning a
  bool or ``"accept"``/``"reject"``/``"ignore"`` (or a :class:`Verdict`). One
  that raises rejects the message; nothing it does reaches the router. A
  rejected message scores its forwarders down (gossipsub P4); an ignored one
  is dropped without penalty. Our own messages are validated before they
  are published: a rejected one raises PubSubError.
* **Hostile input** never stops the node: see the adapter's module doc for
  garbage, oversized and forged RPCs (each counted, and an offence of the
  sending peer in the penalty box), and the router's scores for peers that
  keep misbehaving (graylisted: their RPCs are ignored, and counted).
* **A new subscriber gets no old history**: nothing is replayed on
  subscribe; at most the router's gossip window (a few heartbeats) of
  message IDs is advertised, as in every gossipsub.

Log lines about peers go through :class:`~agentp2p.throttled_log.ThrottledLog`:
everything is counted, at most one line per peer per interval.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID

from agentp2p.config import PubSubConfig
from agentp2p.errors import Forbidden, PubSubError
from agentp2p.protocol.gossipsub.codec import Limits
from agentp2p.protocol.gossipsub.events import Verdict
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import Message as RawMessage
from agentp2p.protocol.gossipsub.service import GossipSubService, PubSubStats
from agentp2p.throttled_log import ThrottledLog

log = logging.getLogger("agentp2p.pubsub")

__all__ = ["Message", "PubSub", "PubSubStats", "Subscription", "Validator", "Verdict"]

OffenceFn = Callable[[Any, str, float], None]

#: RPC framing headroom above the largest message we accept.
_RPC_HEADROOM = 64 * 1024


@dataclass(frozen=True)
class Message:
    """A message received on a topic. ``sender`` is its verified author (StrictSign)."""

    topic: str
    data: bytes
    sender: ID
    seqno: bytes


#: ``validator(msg)`` -> bool, a Verdict or "accept"/"reject"/"ignore"; or an awaitable of one.
Validator = Callable[[Message], Any]


def to_verdict(result: Any) -> Verdict:
    """What a validator returned, as a verdict (anything unrecognised is its truth value)."""
    if isinstance(result, Verdict):
        return result
    if isinstance(result, str):
        try:
            return Verdict(result.lower())
        except ValueError:
            return Verdict.REJECT
    if isinstance(result, enum.Enum) and isinstance(result.value, str):
        return to_verdict(result.value)
    return Verdict.ACCEPT if result else Verdict.REJECT


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
        """Buffer ``msg``; when full, the *oldest* buffered messages make room.

        Dropping the oldest rather than the newest means the newest message
        is always there to be read, so a consumer that reports ``dropped``
        as it reads (the API's event stream) learns of every loss — a burst
        that ends in drops is never a silent gap.
        """
        if self._closed:
            return
        n = len(msg.data)
        buf, max_bytes = self._buf, self._max_bytes
        while buf and (len(buf) >= self._capacity or (max_bytes is not None and self.buffered_bytes + n > max_bytes)):
            old = buf.popleft()
            self.buffered_bytes -= len(old.data)
            self.dropped += 1
            self._stats.dropped_inbound += 1
            self._stats.delivered -= 1
        if max_bytes is not None and n > max_bytes:
            self.dropped += 1
            self._stats.dropped_inbound += 1
            return
        buf.append(msg)
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


def router_params(config: PubSubConfig) -> GossipSubParams:
    """The router's parameters from the ``[pubsub]`` config (the rest are the spec's defaults)."""
    d, d_lo, d_hi = config.degree, config.degree_low, config.degree_high
    return GossipSubParams(
        d=d,
        d_lo=d_lo,
        d_hi=d_hi,
        d_lazy=config.degree_lazy,
        gossip_factor=config.gossip_factor,
        d_score=min(4, d),
        d_out=config.degree_out,
        d_near=config.degree_near,
        heartbeat_interval=config.heartbeat_interval,
        seen_ttl=float(config.seen_ttl),
        flood_publish=config.flood_publish,
    )


class PubSub:
    """The node's pub/sub: topics, subscriptions, validators and publishing over our gossipsub router.

    Built by the assembly with the node's identity (it signs our messages),
    then :meth:`attach`-ed to the node's context (stream handlers, dialer,
    connection events) and run by the node (:meth:`running`) before it listens.
    """

    def __init__(
        self,
        config: PubSubConfig,
        *,
        identity: Any,
        resources: Any = None,
        offence: OffenceFn | None = None,
        authorizer: Any = None,
    ) -> None:
        self.config = config
        #: The node's policy (agentp2p.contract.Authorizing), None for no checks.
        self.authorizer = authorizer
        self._policy_publish = authorizer is not None and authorizer.governs("publish")
        self.stats = PubSubStats()
        self._log = ThrottledLog(log, interval=30.0)
        self._sinks: dict[str, list[Subscription]] = {}
        self._validators: dict[str, Validator] = {}
        self.local_id: ID = identity.peer_id
        self._unyielded = 0
        self.router = GossipSubService(
            identity=identity,
            params=router_params(config),
            limits=Limits(max_rpc_bytes=max(Limits().max_rpc_bytes, config.max_message_size + _RPC_HEADROOM)),
            stats=self.stats,
            deliver=self._deliver,
            validate=self._validate,
            peer_queue_size=config.peer_queue_size,
            peer_queue_bytes=config.peer_queue_bytes,
            inbound_rate_per_peer=config.inbound_rate_per_peer,
            inbound_burst_per_peer=config.inbound_burst_per_peer,
            resources=resources,
            offence=offence,
            scoring=config.scoring,
            stall_limit=2 * config.publish_timeout,
            authorizer=authorizer,
            write_coalesce=config.write_coalesce,
        )
        if authorizer is not None:
            authorizer.on_change(self._policy_changed)

    # -- lifecycle --------------------------------------------------------------

    def attach(self, ctx: Any) -> None:
        """Register the meshsub protocols and take the dialer and connection events."""
        self.router.attach(ctx)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.router.run(task_status=task_status)

    def running(self) -> Any:
        """``async with pubsub.running():`` the router runs for the block."""
        return _Running(self)

    @property
    def is_running(self) -> bool:
        return self.router.running

    # -- delivery and validation (called by the router) --------------------------

    def _message(self, topic: str, raw: RawMessage) -> Message:
        return Message(topic, raw.data, self.router.id_of(raw.from_ or b""), raw.seqno or b"")

    def _deliver(self, topic: str, raw: RawMessage, from_peer: bytes) -> None:
        subs = self._sinks.get(topic)
        if not subs:
            return
        msg = self._message(topic, raw)
        for sub in subs:
            sub._offer(msg)

    def _validate(self, topic: str, raw: RawMessage, from_peer: bytes) -> Verdict | Awaitable[Verdict]:
        if self._policy_publish:
            # The author (StrictSign: it signed the message); the forwarder if unsigned.
            author = self.router.id_of(raw.from_ or from_peer)
            if self.authorizer.pending(author, "publish"):
                return self._await_policy(topic, raw, author)
            if not self._may_publish(author, topic):
                return Verdict.IGNORE  # not the forwarder's fault: no penalty
        return self._user_verdict(topic, raw)

    async def _await_policy(self, topic: str, raw: RawMessage, author: ID) -> Verdict:
        await self.authorizer.resolve(author, dial=True)  # a publisher across the mesh: asked directly, budgeted
        if not self._may_publish(author, topic):
            return Verdict.IGNORE
        verdict = self._user_verdict(topic, raw)
        return verdict if isinstance(verdict, Verdict) else await verdict

    def _may_publish(self, author: ID, topic: str) -> bool:
        """The policy's publish rules for ``author`` on ``topic`` (a refusal counted)."""
        if self.authorizer.check(author, "publish", topic):
            return True
        self.stats.policy_denied_messages += 1
        return False

    def _user_verdict(self, topic: str, raw: RawMessage) -> Verdict | Awaitable[Verdict]:
        """The topic's validator on ``raw``, if the application set one."""
        validator = self._validators.get(topic)
        if validator is None:
            return Verdict.ACCEPT
        return self._run_validator(topic, validator, self._message(topic, raw))

    def _validated(self, topic: str) -> bool:
        """Does the router ask us about each message of ``topic``? (a validator, or the policy)"""
        return topic in self._validators or self._policy_publish

    def _policy_changed(self, policy: Any) -> None:
        self._policy_publish = policy.governs("publish")
        for topic in self._sinks:
            self.router.set_validated(topic, self._validated(topic))
        self.router.policy_changed()

    def _require_allowed(self, action: str, topic: str) -> None:
        """Our own publish/subscribe, checked against our policy with us as the peer."""
        auth = self.authorizer
        if auth is not None and not auth.check(self.local_id, action, topic):
            raise Forbidden(f"{action} on topic {topic!r} is not allowed for this node by its policy")

    def _run_validator(self, topic: str, validator: Validator, msg: Message) -> Verdict | Awaitable[Verdict]:
        try:
            result = validator(msg)
        except Exception as exc:  # noqa: BLE001 — a validator bug rejects, nothing more
            return self._failed(topic, exc)
        if inspect.isawaitable(result):
            return self._await_validator(topic, result)
        return self._count(to_verdict(result))

    async def _await_validator(self, topic: str, pending: Awaitable[Any]) -> Verdict:
        try:
            result = await pending
        except Exception as exc:  # noqa: BLE001
            return self._failed(topic, exc)
        return self._count(to_verdict(result))

    def _failed(self, topic: str, exc: Exception) -> Verdict:
        self._log.warning((topic, "validator-raised"), "validator for %r raised %r; rejecting", topic, exc)
        return self._count(Verdict.REJECT)

    def _count(self, verdict: Verdict) -> Verdict:
        if verdict is Verdict.REJECT:
            self.stats.rejected += 1
        elif verdict is Verdict.IGNORE:
            self.stats.ignored += 1
        return verdict

    # -- subscriptions ------------------------------------------------------------

    async def open_subscription(self, topic: str) -> Subscription:
        _check_topic(topic)
        self._require_allowed("subscribe", topic)
        subs = self._sinks.get(topic)
        if subs is None:
            self.router.subscribe(topic, self._validated(topic))
            subs = self._sinks[topic] = []
        sub = Subscription(topic, self.config.subscription_buffer, self.stats, self.config.subscription_buffer_bytes)
        subs.append(sub)
        await trio.lowlevel.checkpoint()
        return sub

    async def close_subscription(self, sub: Subscription) -> None:
        sub._close()
        subs = self._sinks.get(sub.topic)
        if subs is not None and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._sinks[sub.topic]
                self.router.unsubscribe(sub.topic)
        await trio.lowlevel.checkpoint()

    def topics(self) -> list[str]:
        return sorted(self._sinks)

    def topic_peers(self, topic: str) -> list[ID]:
        """Peers that told us they subscribe to ``topic``."""
        return self.router.topic_peers(topic)

    def mesh_peers(self, topic: str) -> list[ID]:
        """Our mesh for ``topic``: the peers we exchange full messages with."""
        return self.router.mesh_peers(topic)

    def peer_scores(self) -> dict[ID, float]:
        """Every scored peer's gossipsub score (v1.1 P1-P7; empty with scoring off)."""
        return self.router.peer_scores()

    def peer_behaviour_penalty(self, peer: ID) -> float:
        """``peer``'s gossipsub P7 term (<= 0): its own protocol misbehaviour only,
        not where it is (P6) nor what we think of it (P5)."""
        return self.router.behaviour_penalty_of(peer)

    def peer_score(self, peer: ID) -> float:
        """``peer``'s gossipsub score now (0.0 with scoring off or for an untracked peer)."""
        return self.router.score_of(peer)

    @property
    def scoring(self) -> bool:
        """Whether peers are scored (``[pubsub] scoring``); without it every score is 0."""
        return self.config.scoring

    def set_app_score(self, peer: ID, value: float) -> None:
        """The application's opinion of ``peer`` (gossipsub P5, weight 1): positive
        keeps it in our meshes, very negative graylists it. Other services feed this."""
        self.router.set_app_score(peer, value)

    def peer_protocol(self, peer: ID) -> str | None:
        """The gossipsub version spoken with ``peer`` (e.g. ``/meshsub/1.2.0``), None if none."""
        return self.router.protocol_of(peer)

    def peer_queue(self, peer: ID) -> Any:
        """``peer``'s outbound queue (introspection and tests), or None."""
        return self.router.peer_queue(peer)

    # -- publishing -----------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data``; waits (backpressure) rather than letting queues overflow."""
        _check_topic(topic)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("pubsub data must be bytes")
        data = bytes(data)
        if len(data) > self.config.max_message_size:
            raise PubSubError(f"message of {len(data)} bytes exceeds max_message_size={self.config.max_message_size}")
        router = self.router
        if not router.running:
            raise PubSubError("pubsub is not running")
        self._require_allowed("publish", topic)
        validator = self._validators.get(topic)
        if validator is not None:
            own = Message(topic, data, self.local_id, router.next_seqno())
            verdict = self._run_validator(topic, validator, own)
            if not isinstance(verdict, Verdict):
                verdict = await verdict
            if verdict is not Verdict.ACCEPT:
                what = "rejected" if verdict is Verdict.REJECT else "ignored"
                raise PubSubError(f"publish to {topic!r}: our own message was {what} by the topic's validator")
        high = self.config.backpressure_high_water
        if router.max_fill() > high:
            self.stats.backpressure_waits += 1
            deadline = trio.current_time() + self.config.publish_timeout
            while router.max_fill() > high:
                if trio.current_time() >= deadline:
                    raise PubSubError(
                        f"publish to {topic!r} timed out after {self.config.publish_timeout}s: "
                        "peers are not draining their queues"
                    )
                await router.wait_drained(deadline)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        try:
            router.publish(topic, data)
        except Exception as exc:
            raise PubSubError(f"publish to {topic!r} failed: {exc}") from exc
        self.stats.published += 1
        self._unyielded += 1
        if self._unyielded >= _YIELD_EVERY:
            # Let the writers run: a publisher that never awaits anything
            # else would starve them until the high-water mark. Not after
            # every message, so that a burst is written in batches.
            self._unyielded = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    # -- validation ---------------------------------------------------------------

    def set_validator(self, topic: str, validator: Validator | None) -> None:
        """Accept, reject or ignore each incoming (and our own) message on ``topic``.

        ``validator(msg)`` may be sync or async and return a bool, a
        :class:`Verdict` or ``"accept"``/``"reject"``/``"ignore"``. A validator
        that raises rejects the message; it never reaches the node.
        """
        _check_topic(topic)
        if validator is None:
            self._validators.pop(topic, None)
        else:
            self._validators[topic] = validator
        self.router.set_validated(topic, self._validated(topic))

    # -- introspection --------------------------------------------------------------

    def stats_dict(self) -> dict[str, Any]:
        """``node.stats()["pubsub"]``: the counters, meshes, scores and router internals."""
        out: dict[str, Any] = dataclasses.asdict(self.stats)
        out["topics"] = self.topics()
        router = self.router
        core = router.core
        out["peers"] = len(router.pubsub_peers())
        out["mesh"] = {t: len(core.mesh(t)) for t in core.subscriptions()} if core is not None else {}
        scores = list(router.peer_scores().values())
        out["scores"] = {
            "peers": len(scores),
            "min": min(scores) if scores else 0.0,
            "max": max(scores) if scores else 0.0,
            "negative": sum(1 for s in scores if s < 0),
            **(router.scorer.stats() if router.scorer is not None else {}),
        }
        out["signatures"] = dataclasses.asdict(router.verifier.stats)
        out["router"] = router.router_stats()
        return out


#: publish() yields to the scheduler (the writers) at least once per this many messages.
_YIELD_EVERY = 32


class _Running:
    """The router's run task in a nursery of its own, cancelled on exit."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._cm: Any = None

    async def __aenter__(self) -> PubSub:
        self._cm = trio.open_nursery()
        nursery = await self._cm.__aenter__()
        self._nursery = nursery
        try:
            await nursery.start(self._pubsub.run)
        except BaseException:
            nursery.cancel_scope.cancel()
            await self._cm.__aexit__(None, None, None)
            raise
        return self._pubsub

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._nursery.cancel_scope.cancel()
        return await self._cm.__aexit__(*exc_info)


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not topic or len(topic) > 256:
        raise ValueError("topic must be a non-empty string of at most 256 characters")
