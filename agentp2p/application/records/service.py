"""RecordService: publish this agent's record, find live agents by capability.

The network half of issue #6, as a :class:`~agentp2p.contract.NodeService`
named ``"records"``. Every node runs one: a node with an agent record
publishes it; every node (``RecordService.lookup_only()``, which the
assembly adds when no record is configured) caches announced records and
finds agents. The sans-IO pieces (model, signed, validator, cache,
ranking, republish) decide; this module only moves bytes and keeps time.

Publishing (one *round*, serialised by a lock):

1. announce the envelope on ``/agentp2p/records/1.0.0`` if it is new (fast
   path for small networks; see ``announce.py``);
2. ``PUT /agentrec/<hash of peer id>`` to the k closest peers (their
   ``AgentRecordValidator`` refuses forged, expired or older records);
3. ``ADD_PROVIDER`` for each capability key (``agentp2p/cap/<name>``) to
   the k closest peers of that key — k = 20 replicas, above the 3 the design
   asks for, because that is what Kademlia's lookup expects.

A round runs when the node first has a routing table, when the routing
table has doubled since the last round (a node that published while it knew
only its bootstrap peer re-publishes as it learns who is really closest;
the doublings stop counting at ``GROWTH_LIMIT`` peers), when the record is
updated or re-signed (``repub_due``: a third of its lifetime left), every
``reprovide_interval``, and after a failed round — for the failed parts
only, after a back-off of 2 s doubling to 60 s, jittered. A part has failed
when it reached fewer than ``replicas`` (3) remote peers, or fewer than the
routing table holds if that is smaller: on a busy network requests time out,
and a record held by one peer would stay that thin until the next reprovide.
``seq`` is wall-clock milliseconds (never below the last seq + 1), so a
restarted agent's record still replaces the one it published before.

Finding (``find_agents``): candidates from the local cache, plus the DHT
providers of the capability key, taken as the lookup names them (it goes
on meanwhile). A provider whose liveness is DEAD is skipped; one the cache
holds and whose liveness is ALIVE counts as it is; any other is asked for
its record over ``/agentp2p/record/1.0.0`` (which also proves it is up). If
it does not answer: a cached one is pinged; another falls back to a DHT
get unless a ping says it is down. Every record is verified with
``signed.open`` against the peer it should belong to and cached. As soon
as ``limit`` matching, trusted agents are known to be up, the lookup is
ended (so ``limit=1`` costs one provider, not a whole lookup: figures in
docs/scale.md). Otherwise, when the lookup ends, liveness (SWIM via
``liveness=``, else a memoised concurrent ping) drops dead agents. Then
``rank_agents`` orders them.

Every error caused by a peer is contained and counted in
:attr:`RecordService.counters` (``stats()``); none reaches the caller or
stops the service.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multiaddr import Multiaddr

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from . import signed
from .announce import ANNOUNCE_TOPIC, check_announcement
from .cache import RecordCache
from .errors import InvalidRecord, Reason
from .keys import CAPABILITY_KEY_PREFIX, NAMESPACE, record_key
from .liveness import LivenessFn, PingLiveness
from .model import ADDRS_MAX, AgentRecord, Capability
from .protocol import RECORD_PROTOCOL, RecordProtocolError, request_record, serve_record_request
from .ranking import Liveness, RankedAgent, rank_agents
from .republish import repub_at_ms
from .validator import AgentRecordValidator, wall_clock_ms
from agentp2p.bounded_counts import count_bounded
from agentp2p.protocol.dht import DHTError
from agentp2p.protocol.ping import ping

if TYPE_CHECKING:
    from agentp2p.contract import NodeContext

__all__ = ["RecordService", "RecordStats", "capability_provider_key"]

log = logging.getLogger("agentp2p.records")

#: Stop re-publishing on routing-table growth beyond this many peers: by then
#: our view of the k = 20 closest peers is as good as a random walk makes it.
GROWTH_LIMIT = 64
#: How often the growth watcher looks at a table that has not changed, at
#: most, once the record is out (it starts at 0.25 s and doubles).
WATCH_POLL_MAX = 4.0
#: At most one re-sign for changed addresses per this long (addresses that flap).
ADDRS_RESIGN_INTERVAL = 5.0


def _record_addrs(node: Any) -> list[Multiaddr]:
    """What our record says about where to reach us: the node's addresses
    (circuits through our relays last), as many as a record holds."""
    return list(node.listen_addrs())[:ADDRS_MAX]


#: Distinct failure kinds counted by name; the rest count as "other".
FAILURE_KINDS_MAX = 16
#: Wait before retrying the failed parts of a publish round: doubles from
#: MIN to MAX, jittered by +-25 %.
MIN_BACKOFF = 2.0
MAX_BACKOFF = 60.0


def _failure_kind(exc: Exception) -> str:
    """A failed part's label: the DHT's reason (``timeout``, ``nobody``...)
    or the error's type."""
    return exc.reason if isinstance(exc, DHTError) else type(exc).__name__


def capability_provider_key(name: str) -> str:
    """The key given to ``node.dht.provide`` / ``find_providers`` for ``name``.

    ``DHT.provider_key`` hashes it to ``keys.capability_multihash(name)``:
    one formula for the provider key, asserted by the tests.
    """
    return CAPABILITY_KEY_PREFIX + name


@dataclass
class RecordStats:
    """Counters for what happened; peers' misbehaviour shows up here, not as errors."""

    rounds: int = 0
    resigned_for_addrs: int = 0  # re-signed because where we can be reached changed
    round_failures: int = 0
    announced: int = 0
    announce_failures: int = 0
    announcements_accepted: int = 0
    served: int = 0
    fetched: int = 0
    fetch_failures: int = 0
    dht_gets: int = 0
    dht_get_failures: int = 0
    find_provider_failures: int = 0
    found_early: int = 0  # find_agents calls that ended the DHT lookup early: ``limit`` live agents in hand
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Failed parts of publish rounds by part and why: ``put:short`` (stored by
    #: fewer peers than wanted), ``provide:timeout``, ``put:nobody`` (the
    #: DHT's reasons), else the error's type (bounded).
    failure_kinds: dict[str, int] = field(default_factory=dict)

    def reject(self, path: str, reason: Reason) -> None:
        self.rejected[f"{path}:{reason.value}"] += 1

    def rejections(self, path: str | None = None) -> int:
        return sum(n for k, n in self.rejected.items() if path is None or k.startswith(path + ":"))


def _as_capability(c: Capability | str) -> Capability:
    return c if isinstance(c, Capability) else Capability(name=c)


class RecordService:
    """Agent capability records on a node. See the module docstring."""

    name = "records"

    def __init__(
        self,
        name: str | None,
        description: str = "",
        capabilities: Iterable[Capability | str] = (),
        metadata: Mapping[str, str] | None = None,
        *,
        ttl: float = 3600.0,
        liveness: LivenessFn | None = None,
        cache_ttl: float = 300.0,
        cache_entries: int = 4096,
        ping_timeout: float = 1.0,
        liveness_fresh_for: float = 2.0,
        fetch_timeout: float = 3.0,
        reprovide_interval: float = 1800.0,
        republish_on_growth: bool = True,
        settle: float = 0.5,
        replicas: int = 3,
    ) -> None:
        self._fields: dict[str, Any] = {
            "name": name,
            "description": description,
            "capabilities": tuple(_as_capability(c) for c in capabilities),
            "metadata": dict(metadata or {}),
        }
        self._ttl_ms = int(ttl * 1000)
        #: False: this node publishes no record of its own, and only looks up others'.
        self.publishes = name is not None
        if self.publishes:
            # Fail at construction, not at start, if the fields break a rule.
            from libp2p.crypto.ed25519 import create_new_key_pair

            AgentRecord.new(create_new_key_pair(b"\0" * 32).public_key, now_ms=0, seq=0,
                            ttl_ms=self._ttl_ms, **self._fields)
        self._external_liveness = liveness
        self.cache = RecordCache(max_entries=cache_entries, ttl_ms=int(cache_ttl * 1000))
        self.counters = RecordStats()
        self.ping_timeout = ping_timeout
        self.liveness_fresh_for = liveness_fresh_for
        self.fetch_timeout = fetch_timeout
        self.reprovide_interval = reprovide_interval
        self.republish_on_growth = republish_on_growth
        self.settle = settle
        #: Remote copies a round must reach (fewer if the table is smaller).
        self.replicas = replicas
        self.validator = AgentRecordValidator()
        self._node: NodeContext | None = None
        self._pings: PingLiveness | None = None
        self._record: AgentRecord | None = None
        self._envelope: bytes | None = None
        self._announced_seq: int | None = None
        self._rng = random.Random()  # back-off jitter only
        self._round_lock = trio.Lock()
        self._wake = trio.Event()
        self._table_at_last_round = 0
        self.published = trio.Event()  # set after the first successful round
        self._started_at: float | None = None  # trio time run() started
        self._published_after: float | None = None  # seconds from start to ``published``
        self._distrusted: Callable[[ID], bool] | None = None

    # -- NodeService ------------------------------------------------------------

    def use_trust(self, distrusted: Callable[[ID], bool]) -> None:
        """Rank the agents ``distrusted`` says yes for last (the node's trust score)."""
        self._distrusted = distrusted

    def use_liveness(self, liveness: LivenessFn) -> None:
        """Judge liveness with ``liveness`` (e.g. SWIM) unless one was given."""
        if self._external_liveness is None:
            self._external_liveness = liveness

    @classmethod
    def lookup_only(cls) -> RecordService:
        """A records service for a node with no record of its own: it stores
        and caches others' records and finds agents (``find_agents`` works
        from any node)."""
        return cls(None)

    def stats(self) -> dict[str, Any]:
        c = self.counters
        out: dict[str, Any] = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)
                               if f.name not in ("rejected", "failure_kinds")}
        out["rejected"] = dict(c.rejected)
        out["failure_kinds"] = dict(c.failure_kinds)
        # How long the first complete round took from start: what a joining
        # agent waits before others can find it.
        out["published_after_s"] = self._published_after
        out["publishes"] = self.publishes
        out["cached"] = len(self.cache)
        return out

    def attach(self, node: NodeContext) -> None:
        self._node = node
        node.dht.register_validator(NAMESPACE, self.validator)
        node.set_stream_handler(RECORD_PROTOCOL, self._serve)
        node.pubsub.set_validator(ANNOUNCE_TOPIC, self._validate_announcement)
        dialer = node.dialer

        async def ping_peer(peer: ID, timeout: float) -> float:
            return await ping(dialer, peer, timeout)

        self._pings = PingLiveness(ping_peer, timeout=self.ping_timeout, fresh_for=self.liveness_fresh_for)

    async def run(self, node: NodeContext, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sign our record, listen to announcements, publish; reports ready
        (so ``svc.record`` is set when ``async with Node(...)`` returns)."""
        if not self.publishes:
            sub = await node.pubsub.open_subscription(ANNOUNCE_TOPIC)
            try:
                task_status.started()
                await self._consume_announcements(sub)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await node.pubsub.close_subscription(sub)
            return
        self._started_at = trio.current_time()
        self._sign(self._fields)
        # The pubsub layer directly: the node marks itself running only once
        # every service has started, and we are one of them.
        sub = await node.pubsub.open_subscription(ANNOUNCE_TOPIC)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._consume_announcements, sub)
                nursery.start_soon(self._watch_growth)
                task_status.started()
                await self._publisher()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await node.pubsub.close_subscription(sub)

    # -- own record -------------------------------------------------------------

    @property
    def record(self) -> AgentRecord | None:
        """Our current signed record (None until the node runs)."""
        return self._record

    @property
    def envelope(self) -> bytes | None:
        return self._envelope

    def _sign(self, fields: Mapping[str, Any]) -> None:
        node = self._require_node()
        now = wall_clock_ms()
        seq = now if self._record is None else max(now, self._record.seq + 1)
        record = AgentRecord.new(
            node.identity.public_key, now_ms=now, seq=seq, ttl_ms=self._ttl_ms,
            addrs=_record_addrs(node), **fields,
        )
        self._envelope = signed.seal(record, node.identity.private_key)
        self._record = record
        self._fields = dict(fields)

    async def update(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        capabilities: Iterable[Capability | str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AgentRecord:
        """Change what we publish: re-sign with a higher seq, then run a
        publish round (announce, DHT put, provide) before returning."""
        if not self.publishes:
            raise RuntimeError("this node publishes no agent record (its records service only looks agents up)")
        if self._record is None:
            raise RuntimeError("RecordService.update needs a running node")
        fields = dict(self._fields)
        if name is not None:
            fields["name"] = name
        if description is not None:
            fields["description"] = description
        if capabilities is not None:
            fields["capabilities"] = tuple(_as_capability(c) for c in capabilities)
        if metadata is not None:
            fields["metadata"] = dict(metadata)
        self._sign(fields)
        if await self._publish_round():
            self._wake.set()  # let the publisher retry
        assert self._record is not None
        return self._record

    # -- publishing -------------------------------------------------------------

    async def _publisher(self) -> None:
        backoff = MIN_BACKOFF
        next_reprovide = 0.0  # trio time; 0 = "now"
        retry: set[str] | None = None  # after a failure: only what failed
        while True:
            assert self._record is not None
            repub_in = (repub_at_ms(self._record) - wall_clock_ms()) / 1000.0
            if repub_in <= 0:
                self._sign(self._fields)
                next_reprovide, retry = 0.0, None  # a re-signed record goes out at once, whole
                continue
            ready = self._require_node().dht.routing_table_size > 0
            if ready and trio.current_time() >= next_reprovide:
                seq = self._record.seq
                failed = await self._publish_round(only=retry)
                if not failed and self._record.seq != seq:
                    # Re-signed while the round ran (our addresses changed):
                    # its wake-up came before we waited; go again, whole.
                    next_reprovide, retry = 0.0, None
                elif not failed:
                    backoff, retry = MIN_BACKOFF, None
                    next_reprovide = trio.current_time() + self.reprovide_interval
                else:
                    # Retry just the failed parts, later and jittered: under
                    # load, retrying everything at once feeds the overload
                    # that made it fail.
                    retry = failed
                    next_reprovide = trio.current_time() + backoff * self._rng.uniform(0.75, 1.25)
                    backoff = min(backoff * 2, MAX_BACKOFF, self.reprovide_interval)
                continue
            self._wake = trio.Event()
            wait = repub_in if not ready else min(repub_in, next_reprovide - trio.current_time())
            with trio.move_on_after(max(wait, 0.0)):
                await self._wake.wait()
            if self._wake.is_set():
                next_reprovide, retry = 0.0, None

    async def _watch_growth(self) -> None:
        """Wake the publisher when the routing table first fills (and, with
        ``republish_on_growth``, when it has doubled since the last round).

        Waits for the table to settle first (no change for ``settle``
        seconds, or ``4 * settle`` at most): a joining node's table grows
        in a burst, and one round at the end of it is worth more than one
        round per step of it.
        """
        node = self._require_node()
        fast = poll = min(0.25, self.settle / 2)
        size_seen, changed_at, due_since = -1, trio.current_time(), None
        resigned_at = -ADDRS_RESIGN_INTERVAL
        while True:
            await trio.sleep(poll)
            now = trio.current_time()
            if now - resigned_at >= ADDRS_RESIGN_INTERVAL and self._addrs_changed(node):
                # Where we can be reached changed (a relay reservation came or
                # went, a listener moved): the record must say so, now.
                resigned_at = now
                self._sign(self._fields)
                self.counters.resigned_for_addrs += 1
                self._wake.set()
                poll = fast
            size = node.dht.routing_table_size
            last = self._table_at_last_round
            if size != size_seen:
                size_seen, changed_at = size, now
                poll = fast
            elif last > 0 and due_since is None:
                # Published, and the table is still: look less often (an
                # idle node's most frequent wake-up was this poll).
                poll = min(poll * 2, WATCH_POLL_MAX)
            first = last == 0 and size > 0
            grown = self.republish_on_growth and 0 < last < GROWTH_LIMIT and size >= 2 * last
            if not (first or grown):
                due_since = None
                continue
            due_since = now if due_since is None else due_since
            settled = now - changed_at >= self.settle or now - due_since >= 4 * self.settle
            if settled and not self._round_lock.locked():
                self._wake.set()
                due_since = None

    def _addrs_changed(self, node: NodeContext) -> bool:
        record = self._record
        if record is None:
            return False
        return _record_addrs(node) != list(record.addrs)

    async def _publish_round(self, only: set[str] | None = None) -> set[str]:
        """Announce (if new), put and provide our current record.

        ``only`` limits the round to the named parts (``"put"``,
        ``"provide:<cap>"``) — a retry of what failed. Returns the parts
        that failed (empty: the record is fully out).
        """
        node = self._require_node()
        async with self._round_lock:
            record, envelope = self._record, self._envelope
            assert record is not None and envelope is not None
            self._table_at_last_round = node.dht.routing_table_size
            self.counters.rounds += 1
            started = trio.current_time()
            if self._announced_seq != record.seq:
                try:
                    await node.pubsub.publish(ANNOUNCE_TOPIC, envelope)
                    self._announced_seq = record.seq
                    self.counters.announced += 1
                except Exception as exc:  # noqa: BLE001 — the DHT still carries it
                    self.counters.announce_failures += 1
                    log.debug("announcing record failed: %r", exc)
            parts = {"put"} | {f"provide:{c.name}" for c in record.capabilities}
            if only is not None:
                parts &= only
            failed: dict[str, str] = {}

            # A part is out once min(replicas, table) peers hold it: a put or
            # announcement that reached fewer (requests timed out on a busy
            # network, a table that was one peer when the round began) is
            # retried like a failure rather than left thin until the next
            # reprovide.
            want = min(self.replicas, node.dht.routing_table_size)

            async def put() -> None:
                try:
                    held = await node.dht.put_raw(record_key(record.peer_id), envelope)
                except Exception as exc:  # noqa: BLE001
                    failed["put"] = repr(exc)
                    self._count_failure("put", _failure_kind(exc))
                    return
                if held < want:
                    failed["put"] = f"stored by {held} peers, want {want}"
                    self._count_failure("put", "short")

            async def provide(part: str) -> None:
                try:
                    held = await node.dht.provide(capability_provider_key(part.removeprefix("provide:")))
                except Exception as exc:  # noqa: BLE001
                    failed[part] = repr(exc)
                    self._count_failure("provide", _failure_kind(exc))
                    return
                if held < want:
                    failed[part] = f"announced to {held} peers, want {want}"
                    self._count_failure("provide", "short")

            async with trio.open_nursery() as nursery:
                for part in sorted(parts):
                    if part == "put":
                        nursery.start_soon(put)
                    else:
                        nursery.start_soon(provide, part)
            log.debug("publish round %d (seq %d, table %d, %s) took %.2fs%s", self.counters.rounds, record.seq,
                      self._table_at_last_round, sorted(parts), trio.current_time() - started,
                      f", failed: {failed}" if failed else "")
            if failed:
                self.counters.round_failures += 1
                log.info("publish round incomplete: %s", failed)
                return set(failed)
            if not self.published.is_set():
                if self._started_at is not None:
                    self._published_after = round(trio.current_time() - self._started_at, 3)
                self.published.set()
            return set()

    def _count_failure(self, part: str, kind: str) -> None:
        count_bounded(self.counters.failure_kinds, f"{part}:{kind}", FAILURE_KINDS_MAX)

    # -- incoming ---------------------------------------------------------------

    def _now_ms(self) -> int:
        return wall_clock_ms()

    def _lookup_envelope(self, peer: ID | None) -> bytes | None:
        node = self._require_node()
        if peer is None or peer == node.peer_id:
            return self._envelope
        entry = self.cache.get(peer, self._now_ms())
        return entry.envelope if entry is not None else None

    async def _serve(self, stream: Any) -> None:
        self.counters.served += 1
        await serve_record_request(stream, self._lookup_envelope)

    def _validate_announcement(self, msg: Any) -> bool:
        node = self._require_node()
        if msg.sender == node.peer_id:
            return True  # our own publish passes through local validation
        now = self._now_ms()
        held = self.cache.get(msg.sender, now)
        try:
            check_announcement(msg.data, msg.sender, now_ms=now,
                               held=held.record if held is not None else None)
        except InvalidRecord as exc:
            self.counters.reject("announce", exc.reason)
            return False
        return True

    async def _consume_announcements(self, sub: Any) -> None:
        node = self._require_node()
        async for msg in sub:
            if msg.sender == node.peer_id:
                continue
            if self._ingest(msg.data, msg.sender, "announce") is not None:
                self.counters.announcements_accepted += 1

    def _ingest(self, envelope: bytes, expected: ID, path: str) -> AgentRecord | None:
        """Verify ``envelope`` as ``expected``'s record and cache it.

        Returns the newest record we now hold for ``expected`` (None if the
        envelope was rejected). A valid but older record (a replay) is
        counted as rejected ``stale`` and does not replace the newer one.
        """
        now = self._now_ms()
        try:
            record = signed.open(envelope, now_ms=now, expected_peer_id=expected)
        except InvalidRecord as exc:
            self.counters.reject(path, exc.reason)
            return None
        if self.cache.put(record, envelope, now):
            return record
        held = self.cache.get(expected, now)
        if held is None:  # lapsed on arrival (cache TTL); still a valid answer
            return record
        if record.newer_than(held.record) or held.record.newer_than(record):
            self.counters.reject(path, Reason.STALE)  # an older record: a replay
        return held.record

    # -- finding ----------------------------------------------------------------

    def _liveness(self, peer: ID) -> Liveness:
        node = self._require_node()
        if peer == node.peer_id:
            return Liveness.ALIVE
        if self._external_liveness is not None:
            state = self._external_liveness(peer)
            if state is not Liveness.UNKNOWN:
                return state
        assert self._pings is not None
        return self._pings.state(peer)

    def _rtt_ms(self, peer: ID) -> float | None:
        if peer == self._require_node().peer_id:
            return 0.0
        assert self._pings is not None
        return self._pings.rtt_ms(peer)

    async def _probe(self, peers: Iterable[ID]) -> None:
        """Ping the peers on whom the external liveness source has no verdict."""
        assert self._pings is not None
        me = self._require_node().peer_id
        unknown = [p for p in peers if p != me and (
            self._external_liveness is None or self._external_liveness(p) is Liveness.UNKNOWN)]
        await self._pings.probe(unknown)

    async def fetch_record(self, peer: ID, *, via: ID | None = None) -> AgentRecord | None:
        """Ask ``via`` (default: ``peer`` itself) for ``peer``'s record over
        the record protocol; verified and cached, or None."""
        node = self._require_node()
        assert self._pings is not None
        start = time.perf_counter()
        try:
            envelope = await request_record(node.dialer, via or peer, about=peer, timeout=self.fetch_timeout)
        except RecordProtocolError as exc:
            self.counters.fetch_failures += 1
            log.debug("%s", exc)
            return None
        if via is None or via == peer:
            # An answer from the agent is as good as a ping.
            self._pings.observe(peer, True, (time.perf_counter() - start) * 1000.0)
        if envelope is None:
            return None
        self.counters.fetched += 1
        return self._ingest(envelope, peer, "protocol")

    async def dht_record(self, peer: ID) -> AgentRecord | None:
        """``peer``'s record from the DHT (``record_key(peer)``), verified and cached."""
        node = self._require_node()
        self.counters.dht_gets += 1
        try:
            envelope = await node.dht.get_raw(record_key(peer))
        except Exception as exc:  # noqa: BLE001 — timeouts, peers' garbage
            self.counters.dht_get_failures += 1
            log.debug("DHT get for %s failed: %r", peer, exc)
            return None
        if envelope is None:
            return None
        return self._ingest(envelope, peer, "dht")

    async def get_record(self, peer: ID | str, *, fresh: bool = False) -> AgentRecord | None:
        """One agent's current record: our cache (unless ``fresh``), else
        the agent itself, else the DHT. Verified; None if nobody has one."""
        node = self._require_node()
        pid = peer if isinstance(peer, ID) else ID.from_base58(peer)
        if pid == node.peer_id:
            return self._record
        if not fresh:
            entry = self.cache.get(pid, self._now_ms())
            if entry is not None:
                return entry.record
        record = await self.fetch_record(pid)
        if record is None:
            record = await self.dht_record(pid)
        return record

    def _prime(self, info: PeerInfo) -> None:
        """Give the dialer the addresses the DHT named for a provider."""
        if info.addrs:
            self._require_node().dialer.add_addrs(info.peer_id, info.addrs, 600)

    async def _fallback(self, peer: ID) -> AgentRecord | None:
        """The provider did not answer: its record from the DHT, unless it is down."""
        await self._probe([peer])
        if self._liveness(peer) is Liveness.DEAD:
            return None
        return await self.dht_record(peer)

    async def find_agents(
        self,
        capability: str,
        tags: Iterable[str] = (),
        limit: int = 10,
        *,
        include_self: bool = True,
        max_providers: int = 20,
    ) -> list[RankedAgent]:
        """Verified records of live agents offering ``capability`` (with all
        ``tags``), best first; see the module docstring for how.

        Records are fetched as the DHT lookup names providers, and the
        lookup ends as soon as ``limit`` matching agents are known to be up
        (they answered and SWIM does not hold them dead, or their liveness
        says ALIVE, and the node does not distrust them): ``limit=1`` returns
        with the first live agent instead of waiting for the whole lookup."""
        if limit <= 0:
            return []
        node = self._require_node()
        now = self._now_ms()
        wanted = tuple(tags)
        found: dict[ID, AgentRecord] = {r.peer_id: r for r in self.cache.with_capability(capability, now)}
        if include_self and self._record is not None and self._record.capability(capability) is not None:
            found[node.peer_id] = self._record
        live: set[ID] = set()  # matching agents known to be up: the early-stop count
        started: set[ID] = set()
        budget = max(max_providers, limit)
        limiter = trio.CapacityLimiter(16)

        def usable(record: AgentRecord) -> bool:
            return bool(rank_agents([record], capability=capability, tags=wanted, now_ms=now,
                                    liveness=lambda _p: Liveness.ALIVE)) and not (
                self._distrusted is not None and self._distrusted(record.peer_id))

        def counted(record: AgentRecord, scope: trio.CancelScope) -> None:
            if usable(record) and self._liveness(record.peer_id) is not Liveness.DEAD:
                live.add(record.peer_id)
                if len(live) >= limit:
                    scope.cancel()

        async def one(info: PeerInfo, scope: trio.CancelScope) -> None:
            peer = info.peer_id
            async with limiter:
                self._prime(info)
                record = await self.fetch_record(peer)
                if record is not None:  # the agent answered: it is up
                    found[peer] = record
                    counted(record, scope)
                    return
                if peer in found:  # cached: its record is in hand, only its liveness is in doubt
                    await self._probe([peer])
                    record = found[peer]
                else:
                    record = await self._fallback(peer)
            if record is not None:
                found[peer] = record
                if self._liveness(peer) is Liveness.ALIVE:  # a ping says it is up after all
                    counted(record, scope)

        def on_provider(info: PeerInfo, nursery: trio.Nursery) -> None:
            peer = info.peer_id
            if peer == node.peer_id or peer in started or len(started) >= budget:
                return
            started.add(peer)
            state = self._liveness(peer)
            held = found.get(peer)
            if state is Liveness.DEAD:
                return  # ranking drops it: not worth a dial
            if held is not None and state is Liveness.ALIVE:
                counted(held, nursery.cancel_scope)  # cached, and SWIM or a recent ping says up
            else:
                nursery.start_soon(one, info, nursery.cancel_scope)

        if node.peer_id in found and usable(found[node.peer_id]):
            live.add(node.peer_id)
        if len(live) < limit:
            lookup_ended = False
            async with trio.open_nursery() as nursery:
                try:
                    named = await node.dht.find_providers(capability_provider_key(capability), budget,
                                                          on_provider=lambda i: on_provider(i, nursery))
                except Exception as exc:  # noqa: BLE001
                    self.counters.find_provider_failures += 1
                    log.debug("find_providers(%s) failed: %r", capability, exc)
                else:
                    for info in named:  # any the progress reports missed
                        on_provider(info, nursery)
                lookup_ended = True  # by itself: only the fetches can still be cut short
            if nursery.cancel_scope.cancel_called and not lookup_ended:
                self.counters.found_early += 1
        if len(live) >= limit:
            # Ranked as what they proved: up. The cache's other entries were
            # not checked, and a verdict may have gone stale since.
            liveness: Callable[[ID], Liveness] = lambda p: Liveness.ALIVE if p in live else self._liveness(p)  # noqa: E731
        else:  # a full lookup: judge what is still unknown before ranking
            await self._probe(found)
            liveness = self._liveness
        return rank_agents(
            found.values(), capability=capability, tags=wanted, now_ms=self._now_ms(),
            liveness=liveness, rtt_ms=self._rtt_ms, limit=limit, distrusted=self._distrusted,
        )

    # -- helpers ----------------------------------------------------------------

    def _require_node(self) -> NodeContext:
        if self._node is None:
            raise RuntimeError("RecordService is not attached to a node")
        return self._node
