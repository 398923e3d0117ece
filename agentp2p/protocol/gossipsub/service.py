"""The gossipsub adapter: runs a :class:`~.core.GossipSubCore` on real streams, with trio.

The core decides everything (meshes, gossip, scores, what to send whom); this
module moves bytes and answers the core's questions. Per node:

* **Streams.** ``/meshsub/1.2.0``, ``1.1.0`` and ``1.0.0`` are served through
  the node's contained handler registration. Gossipsub keeps one long-lived
  stream per direction: we *write* on the stream we open and *read* on the one
  the peer opens. We never create connections: when one appears
  (:class:`~agentp2p.network.events.ConnectionEvents`) we try to open our
  stream on it (``dial=False``); a peer that refuses is not a pubsub peer.
  A peer becomes known to the core (PeerConnected) with the first stream
  either way, so its first RPC — its subscriptions — is never dropped as
  coming from an unknown peer; what the core sends it before our stream is
  up waits in its queue.
* **Writing.** Each peer has a bounded :class:`~.stream.OutQueue` and one
  writer task. Every SendRpc is encoded at once (each message once, however
  many peers it goes to) and queued; the writer wakes, takes everything
  queued (up to a budget) and writes it with *one* ``stream.write``, the
  queued RPCs merged into as few frames as the receiver's limits allow. What
  arrives while a write is in progress goes out in the next one, so batches
  grow with load. A write that would follow the previous one within
  ``write_coalesce`` (2 ms) waits out the rest of that time, gathering what
  else arrives: at a paced 5,000 msg/s one write carries ~10 messages instead
  of one (a lone write costs more CPU at both ends than the messages it
  carries). The first write after a quiet spell goes at once, so an idle
  link adds no latency, and so does a write that carries a control-only RPC
  (IDONTWANT is worth most when it beats the duplicate). The hold is per
  hop: a message forwarded over busy links may wait once on each.
* **Reading.** Big reads, split by a bounded :class:`FrameReader` (a length
  prefix above the RPC size limit is refused before anything is buffered),
  each frame decoded and checked by the bounded codec. Garbage is dropped,
  counted and an offence of the peer; an oversized frame also resets the
  stream (it cannot be skipped). Nothing a peer sends raises out of here.
  Messages are paced per forwarder by a token bucket
  (``inbound_rate_per_peer``): over the rate we stop *reading* that peer for
  a while — its sender sees backpressure, nothing is lost.
* **Questions.** VerifySignature is answered inline by
  :class:`~.signing.SignatureVerifier` (cached keys, libsodium for Ed25519);
  Validate by the application's validator (``validate`` callback), inline
  when it is synchronous, in a task when it returns an awaitable.
* **Time.** The heartbeat is a task sleeping until ``core.next_deadline()`` on
  trio's clock; every ``handle`` gets ``trio.current_time()``.

Every router call goes through :meth:`GossipSubService._feed`, which runs
the core's actions (and the follow-up events they cause, e.g. a signature
verdict) to completion without awaiting, so the core is never re-entered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID

from agentp2p.errors import DialError
from agentp2p.network.framing import FrameError, FrameReader
from agentp2p.network.ratelimit import PeerRateLimiter
from agentp2p.network.streams import close_quietly, remote_ip
from agentp2p.throttled_log import ThrottledLog

from .codec import CodecError, Limits, decode_rpc
from .core import GossipSubCore
from .events import (
    Deliver,
    PeerConnected,
    PeerDisconnected,
    PeerExchange,
    Publish,
    Published,
    RpcReceived,
    SendRpc,
    SetAppScore,
    SignatureChecked,
    Subscribe,
    Tick,
    Unsubscribe,
    Validate,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from .params import GossipSubParams
from .rpc import Message as RawMessage
from .rpc import Rpc, SubOpts
from .score import PeerScore
from .score_params import PeerScoreThresholds, TopicScoreParams, default_score_params
from .signing import SignatureVerifier, make_signer
from .stream import OutQueue, RpcEncoder

log = logging.getLogger("agentp2p.pubsub")

__all__ = ["GossipSubService", "PubSubStats", "PROTOCOLS"]

#: What we offer when opening our stream, best first (no floodsub: we never speak it).
PROTOCOLS: tuple[str, ...] = ("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0")

#: Offence weights (the penalty box bans at 20 points, halving each minute).
BAD_SIGNATURE_WEIGHT = 1.0
MALFORMED_WEIGHT = 1.0
OVERSIZED_WEIGHT = 5.0
GRAYLISTED_WEIGHT = 1.0
FAILURE_WEIGHT = 2.0

#: Bytes per stream.read(): reads are costly in py-libp2p, so few and big.
READ_CHUNK = 64 * 1024
#: Upper bound on the bytes one stream.write() carries (several merged frames):
#: big enough to amortise a write's cost (yamux framing, Noise, a syscall)
#: over hundreds of small messages, small enough to keep latency in check.
WRITE_BUDGET = 256 * 1024
#: Default minimum spacing of one peer's writes while it is busy (seconds).
WRITE_COALESCE = 0.002
#: Opening our stream: retried while the peer stays connected, backing off
#: from OPEN_BACKOFF to OPEN_BACKOFF_MAX. Never given up while connected: on
#: a starved machine every attempt of a burst can time out, and a peer left
#: without our stream gets nothing from us for the life of the connection
#: (seen at 50 nodes: subscribers with no pub/sub peer at all). A peer that
#: does not speak meshsub costs one refused negotiation per OPEN_BACKOFF_MAX.
OPEN_BACKOFF = 0.5
OPEN_BACKOFF_MAX = 30.0


def _open_backoff(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` in a row (0: at once)."""
    if failures <= 0:
        return OPEN_BACKOFF
    return min(OPEN_BACKOFF_MAX, OPEN_BACKOFF * 2 ** min(failures - 1, 16))
OPEN_TIMEOUT = 10.0
#: The longest single pause of a reader for a peer over its message rate.
MAX_PACING_SLEEP = 0.5


@dataclass
class PubSubStats:
    """Counters of the node's pub/sub (``node.stats()["pubsub"]``)."""

    published: int = 0
    delivered: int = 0
    dropped_inbound: int = 0  # a local subscriber's buffer was full
    dropped_outbound: int = 0  # a peer's outbound queue was full (or memory refused)
    rejected: int = 0  # a topic validator said no (or raised)
    backpressure_waits: int = 0
    invalid_signatures: int = 0  # a received message failed signature checks
    contained: int = 0  # processing a peer's input raised (a bug), contained
    rate_limited: int = 0  # messages a forwarder sent over inbound_rate_per_peer (paced, not dropped)
    ignored: int = 0  # a topic validator said "ignore"
    malformed: int = 0  # RPC frames that did not decode or broke the codec's limits
    oversized: int = 0  # length prefixes over the RPC size limit (stream reset)
    graylisted: int = 0  # RPCs ignored because their sender's score is below the graylist threshold
    dropped_disconnected: int = 0  # RPCs queued for a peer that went away before they were written
    write_failures: int = 0  # writes that failed (the stream or connection died; reopened if still connected)
    peers_gone_with_queue: int = 0  # peers forgotten (disconnected) while RPCs were queued for them
    rpc_in: int = 0
    rpc_out: int = 0  # RPC frames written (each may merge many queued RPCs)
    rpcs_queued: int = 0  # RPCs the router sent (before merging)
    bytes_in: int = 0
    bytes_out: int = 0
    writes: int = 0
    writes_held: int = 0  # writes that waited out write_coalesce after the previous one, gathering more
    heartbeats: int = 0
    peer_exchanges: int = 0  # PRUNE peer-exchange suggestions received (we do not dial them)
    validation_waits: int = 0  # reads held back while too many async validations ran
    idontwant_in: int = 0  # IDONTWANT message IDs received (gossipsub v1.2)
    idontwant_out: int = 0  # ... and sent
    open_retries: int = 0  # our stream to a connected peer failed to open and was tried again
    # The authorization policy (docs/security.md): messages whose author may
    # not publish on their topic (ignored: not delivered, not forwarded), and
    # peers' subscriptions and GRAFTs refused (they are sent nothing of the topic).
    policy_denied_messages: int = 0
    policy_denied_subscriptions: int = 0


Deliverer = Callable[[str, RawMessage, bytes], None]
ValidatorHook = Callable[[str, RawMessage, bytes], "Verdict | Awaitable[Verdict]"]


class _Peer:
    """One remote peer as the adapter sees it."""

    __slots__ = ("id", "key", "queue", "out_stream", "known", "wake", "scope", "in_scope", "in_stream",
                 "task_running", "outbound", "ip", "ever_written", "protocol", "urgent")

    def __init__(self, peer_id: ID, queue: OutQueue) -> None:
        self.id = peer_id
        self.key: bytes = peer_id.to_bytes()
        self.queue = queue
        self.out_stream: Any = None
        #: The core has been told PeerConnected (and not PeerDisconnected since).
        self.known = False
        self.wake = trio.Event()
        self.scope = trio.CancelScope()  # the peer's opener/writer task
        self.in_scope: trio.CancelScope | None = None  # the current inbound reader
        self.in_stream: Any = None
        self.task_running = False
        self.outbound = False
        self.ip: str | None = None
        self.ever_written = False
        self.protocol: str | None = None  # the meshsub version the router uses with it
        #: A control-only RPC is queued: the next write is not held (write_coalesce).
        self.urgent = False


def _initiator(stream: Any) -> bool:
    with contextlib.suppress(Exception):
        return bool(stream.muxed_conn.is_initiator)
    return False


class GossipSubService:
    """The running gossipsub router of one node (see the module doc)."""

    def __init__(
        self,
        *,
        identity: Any,
        params: GossipSubParams,
        limits: Limits,
        stats: PubSubStats,
        deliver: Deliverer,
        validate: ValidatorHook,
        peer_queue_size: int,
        peer_queue_bytes: int,
        inbound_rate_per_peer: float,
        inbound_burst_per_peer: float,
        resources: Any = None,
        offence: Callable[[Any, str, float], None] | None = None,
        scoring: bool = True,
        thresholds: PeerScoreThresholds | None = None,
        stall_limit: float = 20.0,
        authorizer: Any = None,
        write_coalesce: float = WRITE_COALESCE,
    ) -> None:
        self.identity = identity
        #: The node's policy (agentp2p.contract.Authorizing): who may subscribe through us.
        self._authorizer = authorizer
        self._refused_subs: dict[ID, set[str]] = {}  # peer -> topics whose SUBSCRIBE the policy refused
        if authorizer is not None and hasattr(authorizer, "on_learned"):
            authorizer.on_learned(self.recheck_refused)
        self.local_id: ID = identity.peer_id
        self.local_key: bytes = self.local_id.to_bytes()
        self.params = params
        self.limits = limits
        self.stats = stats
        self._deliver = deliver
        self._validate = validate
        #: A queue that made no progress this long no longer holds up publishes.
        self._stuck_after = stall_limit
        #: A write this soon after the previous one waits to gather more (0: never).
        self._coalesce = write_coalesce
        self._queue_size = peer_queue_size
        self._queue_bytes = peer_queue_bytes
        self._rate = inbound_rate_per_peer
        self._inbound = PeerRateLimiter(inbound_rate_per_peer, inbound_burst_per_peer)
        self._resources = resources
        self._offence = offence
        self._scoring = scoring
        self._thresholds = thresholds or PeerScoreThresholds()
        self._sign, self._sign_key = make_signer(identity)
        self.verifier = SignatureVerifier()
        self._encoder = RpcEncoder()
        self._log = ThrottledLog(log, interval=30.0)
        self.core: GossipSubCore | None = None
        self.scorer: PeerScore | None = None
        self._peers: dict[ID, _Peer] = {}
        self._by_key: dict[bytes, _Peer] = {}
        self._busy: set[_Peer] = set()  # peers with a non-empty queue
        self._ids: dict[bytes, ID] = {}  # author key -> ID (bounded)
        self._work: deque[Any] = deque()
        self._feeding = False
        self._published: Published | None = None
        self._nursery: trio.Nursery | None = None
        self._events: Any = None
        self._dialer: Any = None
        self._ready = trio.Event()
        self._drained: trio.Event | None = None
        self._app_scores: dict[bytes, float] = {}
        self._topics_validated: dict[str, bool] = {}
        self._seqno = time.time_ns()
        self.running = False
        #: Async validations in flight, and the bound past which readers wait.
        self._validating = 0
        self._max_validating = max(1, params.max_pending // 2)
        self._validation_slot = trio.Event()

    # ------------------------------------------------------------------ wiring

    def attach(self, ctx: Any) -> None:
        """Register the meshsub handlers and take the dialer and connection events (node assembly)."""
        self._dialer = ctx.dialer
        self._events = ctx.events.subscribe()
        for proto in PROTOCOLS:
            ctx.set_stream_handler(proto, self._handle_inbound)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the router until cancelled; reports started once it accepts work."""
        now = trio.current_time()
        if self._scoring:
            self.scorer = PeerScore(default_score_params(), self._thresholds, now=now)
        self.core = GossipSubCore(
            self.local_key,
            rng=random.Random(),
            now=now,
            params=self.params,
            scorer=self.scorer,
            sign=self._sign,
            sign_key=self._sign_key,
            seqno_start=self._seqno,
            limits=self.limits,
        )
        self._drained = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._heartbeat)
                if self._events is not None:
                    nursery.start_soon(self._watch_connections, self._events)
                self.running = True
                self._ready.set()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.running = False
            self._nursery = None
            for peer in list(self._peers.values()):
                if peer.in_scope is not None:
                    peer.in_scope.cancel()
                peer.queue.close()
            self._peers.clear()
            self._by_key.clear()
            self._busy.clear()

    # ------------------------------------------------------------------ router calls

    def _feed(self, event: Any, source: _Peer | None = None) -> None:
        """Hand ``event`` to the core and carry out everything that follows, to completion."""
        self._work.append((event, source))
        if self._feeding:
            return
        self._feeding = True
        core = self.core
        assert core is not None
        try:
            work = self._work
            while work:
                ev, src = work.popleft()
                try:
                    actions = core.handle(trio.current_time(), ev)
                except Exception as exc:  # noqa: BLE001 — a router bug must not stop the node
                    self.stats.contained += 1
                    self._log.warning(("-", "router"), "pubsub: router failed on %s: %r", type(ev).__name__, exc)
                    continue
                self._apply(actions, src)
        finally:
            self._feeding = False
            self._encoder.clear()

    def _apply(self, actions: list[Any], source: _Peer | None) -> None:
        stats = self.stats
        for a in actions:
            t = type(a)
            if t is SendRpc:
                self._send(a.peer, a.rpc)
            elif t is Deliver:
                try:
                    self._deliver(a.topic, a.message, a.from_peer)
                except Exception as exc:  # noqa: BLE001
                    stats.contained += 1
                    self._log.warning(("-", "deliver"), "pubsub: delivery failed: %r", exc)
            elif t is VerifySignature:
                ok = self.verifier.verify(a.message, a.payload)
                if not ok:
                    stats.invalid_signatures += 1
                    if source is not None:
                        self._report(source.id, "invalid-signature", BAD_SIGNATURE_WEIGHT)
                self._work.append((SignatureChecked(a.msg_id, ok), source))
            elif t is Validate:
                self._run_validator(a)
            elif t is Published:
                self._published = a
            elif t is PeerExchange:
                stats.peer_exchanges += 1

    def _run_validator(self, a: Validate) -> None:
        try:
            verdict = self._validate(a.topic, a.message, a.from_peer)
        except Exception:  # noqa: BLE001 — the hook contains validator errors; belt and braces
            verdict = Verdict.REJECT
        if isinstance(verdict, Verdict):
            self._work.append((ValidationResult(a.msg_id, verdict), None))
            return
        nursery = self._nursery
        if nursery is None:
            self._work.append((ValidationResult(a.msg_id, Verdict.IGNORE), None))
            return
        self._validating += 1
        nursery.start_soon(self._await_verdict, a.msg_id, verdict)

    async def _await_verdict(self, msg_id: bytes, pending: Awaitable[Verdict]) -> None:
        try:
            try:
                verdict = await pending
            except Exception:  # noqa: BLE001
                verdict = Verdict.REJECT
        finally:
            self._validating -= 1
            if self._validating < self._max_validating:
                self._validation_slot.set()
        if not isinstance(verdict, Verdict):
            verdict = Verdict.REJECT
        if self.running:
            self._feed(ValidationResult(msg_id, verdict))

    async def _validation_room(self) -> None:
        """Wait while too many async validations are running: the reader stops
        reading (its sender sees backpressure) rather than the router refusing
        messages once its pending table is full."""
        while self._validating >= self._max_validating:
            self.stats.validation_waits += 1
            if self._validation_slot.is_set():
                self._validation_slot = trio.Event()
            await self._validation_slot.wait()

    # ------------------------------------------------------------------ API for PubSub

    def subscribe(self, topic: str, validate: bool) -> None:
        self._require_running()
        if self.scorer is not None and topic not in self.scorer.params.topics:
            # Score behaviour on the topics we are in (P1-P4). The params'
            # topic map is only read, never iterated across a call, so
            # adding to it is safe; topics are never removed (a retained
            # peer's counters may still refer to them).
            if len(self.scorer.params.topics) < self.params.max_topics:
                self.scorer.params.topics[topic] = TopicScoreParams()
        self._topics_validated[topic] = validate
        self._feed(Subscribe(topic, validate))

    def set_validated(self, topic: str, validate: bool) -> None:
        """A validator was set or removed for a topic we may be subscribed to."""
        if self.core is not None and topic in self._topics_validated:
            self._topics_validated[topic] = validate
            self._feed(Subscribe(topic, validate))

    def unsubscribe(self, topic: str) -> None:
        self._topics_validated.pop(topic, None)
        if self.core is not None and self.running:
            self._feed(Unsubscribe(topic))

    def next_seqno(self) -> bytes:
        """The seqno our next Publish will carry (the core counts up from ``seqno_start``)."""
        return ((self._seqno + 1) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")

    def publish(self, topic: str, data: bytes) -> Published:
        """Hand our message to the router (raises ValueError if it cannot take it)."""
        self._require_running()
        core = self.core
        assert core is not None and not self._feeding
        self._published = None
        self._feeding = True
        try:
            self._seqno += 1  # the core counts the same way (before it can refuse the message)
            actions = core.handle(trio.current_time(), Publish(topic, data))
            self._apply(actions, None)
        finally:
            self._feeding = False
        self._drain()
        published = self._published
        self._published = None
        assert published is not None
        return published

    def _drain(self) -> None:
        """Run the follow-up events queued by an _apply done outside _feed."""
        if self._work:
            ev, src = self._work.popleft()
            self._feed(ev, src)
        else:
            self._encoder.clear()

    def set_app_score(self, peer: ID, value: float) -> None:
        """P5 for ``peer``: kept (bounded) and re-applied when the peer (re)connects."""
        key = peer.to_bytes()
        value = float(value)
        self._app_scores[key] = value
        while len(self._app_scores) > 10_000:
            self._app_scores.pop(next(iter(self._app_scores)))
        if self.core is not None and self.running and self.scorer is not None:
            self._feed(SetAppScore(key, value))

    def _require_running(self) -> None:
        if self.core is None or not self.running:
            from agentp2p.errors import NotRunningError

            raise NotRunningError("pubsub is not running (start the node first)")

    # -- backpressure

    def max_fill(self) -> float:
        """The fullest peer queue (items or bytes), ignoring queues stalled for 2 x publish_timeout."""
        if not self._busy:
            return 0.0
        now = trio.current_time()
        fill = 0.0
        for p in self._busy:
            q = p.queue
            if q.stalled_for(now) > self._stuck_after:
                continue
            f = q.fill()
            if f > fill:
                fill = f
        return fill

    async def wait_drained(self, deadline: float) -> None:
        """Until a write completes somewhere (or ``deadline``)."""
        ev = self._drained
        if ev is None or ev.is_set():
            ev = self._drained = trio.Event()
        with trio.move_on_at(deadline):
            await ev.wait()

    def _signal_drained(self) -> None:
        ev = self._drained
        if ev is not None:
            ev.set()

    # -- introspection

    def id_of(self, key: bytes) -> ID:
        pid = self._ids.get(key)
        if pid is None:
            p = self._by_key.get(key)
            pid = p.id if p is not None else ID(key)
            if len(self._ids) >= 8192:
                self._ids.clear()
            self._ids[key] = pid
        return pid

    def topic_peers(self, topic: str) -> list[ID]:
        if self.core is None:
            return []
        return sorted((self.id_of(k) for k in self.core.peers(topic)), key=str)

    def mesh_peers(self, topic: str) -> list[ID]:
        if self.core is None:
            return []
        return sorted((self.id_of(k) for k in self.core.mesh(topic)), key=str)

    def peer_scores(self) -> dict[ID, float]:
        if self.core is None:
            return {}
        if self.scorer is not None:
            return {self.id_of(k): v for k, v in self.scorer.scores().items()}
        return {self.id_of(k): self.core.score(k) for k in self.core.peers()}

    def score_of(self, peer: ID) -> float:
        """``peer``'s score now (0.0 with scoring off, or for a peer the scorer does not track)."""
        if self.scorer is None:
            return 0.0
        return self.scorer.score(peer.to_bytes(), trio.current_time())

    def behaviour_penalty_of(self, peer: ID) -> float:
        """``peer``'s gossipsub P7 term now (0.0 with scoring off)."""
        return 0.0 if self.scorer is None else self.scorer.behaviour_penalty(peer.to_bytes())

    def peer_queue(self, peer: ID) -> OutQueue | None:
        p = self._peers.get(peer)
        return p.queue if p is not None else None

    def protocol_of(self, peer: ID) -> str | None:
        """The meshsub protocol the router speaks with ``peer`` (None: not a pubsub peer)."""
        p = self._peers.get(peer)
        return p.protocol if p is not None and p.known else None

    def pubsub_peers(self) -> list[ID]:
        return [p.id for p in self._peers.values() if p.known]

    # ------------------------------------------------------------------ output

    def _send(self, key: bytes, rpc: Rpc) -> None:
        peer = self._by_key.get(key)
        if peer is None:
            return
        item = self._encoder.encode(rpc)
        self.stats.rpcs_queued += 1
        ctl = rpc.control
        if ctl and ctl.idontwant:
            self.stats.idontwant_out += sum(len(i.ids) for i in ctl.idontwant)
        if not peer.queue.push(item, trio.current_time()):
            self.stats.dropped_outbound += 1
            self._log.warning((str(peer.id), "queue-full"),
                              "pubsub: outbound queue of peer %s is full; dropping (counted)", peer.id)
            return
        if not rpc.publish:
            peer.urgent = True  # control (IDONTWANT above all) is worth most when early: not held
        self._busy.add(peer)
        peer.wake.set()

    async def _write_loop(self, peer: _Peer, stream: Any) -> None:
        """Write whatever is queued for ``peer`` until the stream fails."""
        queue = peer.queue
        stats = self.stats
        coalesce = self._coalesce
        last_write = -math.inf
        while True:
            if not queue.items:
                self._busy.discard(peer)
                await peer.wake.wait()
                peer.wake = trio.Event()
                continue
            now = trio.current_time()
            if coalesce and not peer.urgent and queue.bytes < WRITE_BUDGET and now < last_write + coalesce:
                stats.writes_held += 1  # a busy link: gather what else arrives
                await trio.sleep_until(last_write + coalesce)
                continue  # look again: the peer may be gone, or the budget reached
            if getattr(getattr(stream, "muxed_conn", None), "is_closed", False):
                # Its connection closed while the peer came back on another
                # (see _watch_connections): reopen, the queue intact.
                return
            last_write = now
            peer.urgent = False
            data, frames = queue.take(WRITE_BUDGET)
            try:
                await stream.write(data)
            except trio.Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 — the stream (or connection) died
                stats.dropped_disconnected += queue.inflight_items
                stats.write_failures += 1
                queue.written(trio.current_time(), 0, ok=False)
                self._signal_drained()
                log.debug("pubsub: writing to %s failed: %r", peer.id, exc)
                return
            queue.written(trio.current_time(), frames)
            peer.ever_written = True
            stats.writes += 1
            stats.rpc_out += frames
            stats.bytes_out += len(data)
            if not queue.items:
                self._busy.discard(peer)
            self._signal_drained()

    # ------------------------------------------------------------------ peers

    def _peer(self, peer_id: ID) -> _Peer:
        peer = self._peers.get(peer_id)
        if peer is None:
            reservation = self._resources.reservation(peer_id, "pubsub") if self._resources is not None else None
            queue = OutQueue(self._queue_size, self._queue_bytes, reservation, trio.current_time(), self.limits)
            peer = _Peer(peer_id, queue)
            self._peers[peer_id] = peer
            self._by_key[peer.key] = peer
        return peer

    def _start_peer_task(self, peer: _Peer) -> None:
        if peer.task_running or self._nursery is None or self._peers.get(peer.id) is not peer:
            return
        peer.task_running = True
        peer.scope = trio.CancelScope()  # a scope is entered once: a fresh one per task
        self._nursery.start_soon(self._peer_main, peer, name=f"pubsub:{peer.id}")

    def _connected(self, peer: _Peer, protocol: str, outbound: bool, ip: str | None) -> None:
        """Tell the core about ``peer`` (again: a protocol/direction update is harmless)."""
        if self._peers.get(peer.id) is not peer:
            return
        first = not peer.known
        peer.known = True
        peer.outbound, peer.ip, peer.protocol = outbound, ip, protocol
        self._feed(PeerConnected(peer.key, protocol, outbound, ip))
        if first and self.scorer is not None:
            app = self._app_scores.get(peer.key)
            if app is not None:
                self._feed(SetAppScore(peer.key, app))

    def _forget(self, peer: _Peer) -> None:
        """``peer`` is gone (disconnected, or not a pubsub peer): drop everything about it."""
        if self._peers.get(peer.id) is peer:
            del self._peers[peer.id]
            self._by_key.pop(peer.key, None)
            self._refused_subs.pop(peer.id, None)
        peer.scope.cancel()
        if peer.in_scope is not None:
            peer.in_scope.cancel()
        if peer.known:
            peer.known = False
            self._feed(PeerDisconnected(peer.key))
        cleared = peer.queue.clear()
        if cleared:
            self.stats.dropped_disconnected += cleared
            self.stats.peers_gone_with_queue += 1
        peer.queue.close()
        self._busy.discard(peer)
        self._signal_drained()

    async def _watch_connections(self, events: Any) -> None:
        async for ev in events:
            try:
                if ev.connected:
                    if ev.peer_id == self.local_id:
                        continue
                    peer = self._peer(ev.peer_id)
                    self._start_peer_task(peer)
                else:
                    peer = self._peers.get(ev.peer_id)
                    if self._dialer is not None and self._dialer.is_connected(ev.peer_id):
                        # Back already (a redial outran this event): its new
                        # stream may be read by now, and its old ones end by
                        # themselves (the writer reopens while connected).
                        continue
                    if peer is not None:
                        self._forget(peer)
            except Exception as exc:  # noqa: BLE001
                self.stats.contained += 1
                self._log.warning(("-", "events"), "pubsub: connection event failed: %r", exc)

    async def _open(self, peer: _Peer) -> Any:
        if self._dialer is None:
            return None
        try:
            return await self._dialer.open_stream(peer.id, PROTOCOLS, dial=False, timeout=OPEN_TIMEOUT)
        except (DialError, Exception) as exc:  # noqa: BLE001
            log.debug("pubsub: cannot open a meshsub stream to %s: %r", peer.id, exc)
            return None

    async def _peer_main(self, peer: _Peer) -> None:
        """Open our stream to ``peer`` and write to it; reopen if it breaks while connected."""
        failures = 0
        try:
            with peer.scope:
                while True:
                    stream = await self._open(peer)
                    if stream is None:
                        failures += 1
                        # Opening fails for passing reasons (the peer's
                        # stream-rate limit when many services open streams at
                        # once, negotiation timing out on a busy process):
                        # retry while connected, backing off (see OPEN_BACKOFF).
                        if self._dialer is None or not self._dialer.is_connected(peer.id):
                            break
                        self.stats.open_retries += 1
                        await trio.sleep(_open_backoff(failures))
                        continue
                    peer.out_stream = stream
                    self._connected(peer, str(stream.get_protocol()), _initiator(stream), remote_ip(stream))
                    written = peer.queue.frames_written
                    try:
                        await self._write_loop(peer, stream)
                    finally:
                        peer.out_stream = None
                        await close_quietly(stream, reset=True)
                    if peer.queue.frames_written > written:
                        failures = 0
                    else:
                        failures += 1
                    if self._dialer is None or not self._dialer.is_connected(peer.id):
                        break
                    await trio.sleep(_open_backoff(failures))
        finally:
            peer.task_running = False
        # Gave up (the scope was not cancelled: that is _forget's doing).
        if self._peers.get(peer.id) is peer and not peer.scope.cancel_called:
            if peer.in_scope is not None:
                # Still reading its stream: it is connected but will not take
                # ours. The core forgets it (nothing to send it with).
                if peer.known:
                    peer.known = False
                    self._feed(PeerDisconnected(peer.key))
                self.stats.dropped_disconnected += peer.queue.clear()
                self._busy.discard(peer)
            else:
                self._forget(peer)

    # ------------------------------------------------------------------ input

    async def _handle_inbound(self, stream: Any) -> None:
        """A peer's stream to us: read its RPCs until it ends (runs in the swarm's nursery)."""
        peer_id = stream.muxed_conn.peer_id
        with trio.move_on_after(30):
            await self._ready.wait()
        if not self.running or peer_id == self.local_id:
            await close_quietly(stream, reset=True)
            return
        peer = self._peer(peer_id)
        if peer.in_scope is not None:
            peer.in_scope.cancel()  # the peer replaced its stream: the newest wins
        scope = peer.in_scope = trio.CancelScope()
        peer.in_stream = stream
        if not peer.known:
            self._connected(peer, str(stream.get_protocol()), _initiator(stream), remote_ip(stream))
        self._start_peer_task(peer)
        try:
            with scope:
                await self._read_loop(peer, stream)
        finally:
            if peer.in_scope is scope:
                peer.in_scope = None
                peer.in_stream = None
            await close_quietly(stream, reset=True)

    async def _read_loop(self, peer: _Peer, stream: Any) -> None:
        reader = FrameReader(self.limits.max_rpc_bytes)
        stats = self.stats
        limits = self.limits
        while True:
            try:
                data = await stream.read(READ_CHUNK)
            except trio.Cancelled:
                raise
            except Exception:  # noqa: BLE001 — reset, EOF, connection gone
                return
            if not data:
                return
            stats.bytes_in += len(data)
            try:
                frames = reader.feed(data)
            except FrameError as exc:
                stats.oversized += 1
                self._report(peer.id, "oversized-rpc", OVERSIZED_WEIGHT, str(exc))
                return  # cannot resynchronise: the stream is reset
            for raw in frames:
                stats.rpc_in += 1
                try:
                    rpc = decode_rpc(raw, limits)
                except CodecError as exc:
                    stats.malformed += 1
                    self._report(peer.id, "malformed-rpc", MALFORMED_WEIGHT, str(exc))
                    continue
                except Exception as exc:  # noqa: BLE001 — the codec promises CodecError only
                    stats.contained += 1
                    self._report(peer.id, "decode-failed", FAILURE_WEIGHT, repr(exc))
                    continue
                ctl = rpc.control
                if ctl and ctl.idontwant:
                    stats.idontwant_in += sum(len(i.ids) for i in ctl.idontwant)
                if rpc.publish:
                    await self._pace(peer, len(rpc.publish))
                    if self._validating >= self._max_validating:
                        await self._validation_room()
                authz = self._authorizer
                if authz is not None and (rpc.subscriptions or ctl.graft) and authz.governs("subscribe"):
                    if authz.pending(peer.id, "subscribe"):
                        await authz.resolve(peer.id)  # its certificates, before its subscriptions count
                    rpc = self._screen_subscriptions(peer.id, rpc)
                if not peer.known or self._peers.get(peer.id) is not peer or not self.running:
                    continue
                core = self.core
                assert core is not None
                gray = core.stats.graylisted
                self._feed(RpcReceived(peer.key, rpc), peer)
                if core.stats.graylisted != gray:
                    stats.graylisted += 1
                    self._report(peer.id, "graylisted", GRAYLISTED_WEIGHT)

    def _screen_subscriptions(self, peer: ID, rpc: Rpc) -> Rpc:
        """``rpc`` without the subscriptions and GRAFTs the policy refuses ``peer``."""
        authz = self._authorizer
        assert authz is not None
        subs = tuple(s for s in rpc.subscriptions if not s.subscribe or authz.check(peer, "subscribe", s.topic))
        ctl = rpc.control
        grafts = tuple(g for g in ctl.graft if authz.decide(peer, "subscribe", g.topic).allowed)
        refused = len(rpc.subscriptions) - len(subs) + len(ctl.graft) - len(grafts)
        if not refused:
            return rpc
        self.stats.policy_denied_subscriptions += refused
        # Remembered (bounded like the core's topics per peer): peers do not
        # say SUBSCRIBE twice, so if the refusal was for want of certificates
        # not fetched yet, or the policy changes, it is re-checked then.
        held = self._refused_subs.setdefault(peer, set())
        for sub in rpc.subscriptions:
            if sub.subscribe and sub not in subs and len(held) < self.params.max_topics_per_peer:
                held.add(sub.topic)
            elif not sub.subscribe:
                held.discard(sub.topic)
        return dataclasses.replace(rpc, subscriptions=subs, control=dataclasses.replace(ctl, graft=grafts))

    def recheck_refused(self, peer: ID) -> None:
        """Subscriptions of ``peer`` the policy refused, admitted if it now allows them
        (its certificates came in, or the policy changed)."""
        held, authz = self._refused_subs.get(peer), self._authorizer
        p = self._peers.get(peer)
        if not held or authz is None or p is None or not p.known or not self.running:
            return
        allowed = {t for t in held if authz.decide(peer, "subscribe", t).allowed}
        if allowed:
            held -= allowed
            self._feed(RpcReceived(p.key, Rpc(subscriptions=tuple(SubOpts(True, t) for t in sorted(allowed)))))

    def policy_changed(self) -> None:
        """The policy changed: peers it now refuses a topic are unsubscribed from it
        (as if they had said so), so nothing more of it reaches them."""
        authz, core = self._authorizer, self.core
        if authz is None or core is None or not self.running:
            return
        for peer in list(self._refused_subs):
            self.recheck_refused(peer)
        if not authz.governs("subscribe"):
            return
        for topic in core.subscriptions():
            for key in core.peers(topic):
                peer = self.id_of(key)
                if not authz.check(peer, "subscribe", topic):
                    self.stats.policy_denied_subscriptions += 1
                    self._feed(RpcReceived(key, Rpc(subscriptions=(SubOpts(False, topic),))))

    async def _pace(self, peer: _Peer, n: int) -> None:
        """Spend ``n`` message tokens of ``peer``; stop reading it while there are none."""
        limiter = self._inbound
        counted = False
        i = 0
        while i < n:
            if limiter.allow(peer.id, trio.current_time()):
                i += 1
                continue
            if not counted:
                self.stats.rate_limited += n - i
                counted = True
            await trio.sleep(min(MAX_PACING_SLEEP, max(0.001, (n - i) / self._rate)))

    async def _heartbeat(self) -> None:
        core = self.core
        assert core is not None
        interval = self.params.heartbeat_interval
        while True:
            await trio.sleep_until(core.next_deadline())
            self.stats.heartbeats += 1
            self._feed(Tick())
            if core.next_deadline() <= trio.current_time():
                # The heartbeat failed before rescheduling itself (contained in
                # _feed): do not spin on it.
                await trio.sleep(interval)

    # ------------------------------------------------------------------ reporting

    def _report(self, peer: ID, reason: str, weight: float, detail: str | None = None) -> None:
        """A throttled log line (at most one per peer per interval) and an offence."""
        if peer == self.local_id:
            return
        self._log.warning(str(peer), "pubsub: %s from peer %s%s", reason, peer, f": {detail}" if detail else "")
        if self._offence is not None:
            self._offence(peer, f"pubsub:{reason}", weight)

    def router_stats(self) -> dict[str, Any]:
        core = self.core
        if core is None:
            return {}
        out: dict[str, Any] = {f.name: getattr(core.stats, f.name) for f in dataclasses.fields(core.stats)}
        out["rejected"] = dict(core.stats.rejected)
        out["sizes"] = core.sizes()
        return out
