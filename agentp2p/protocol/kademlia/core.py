"""The Kademlia node: ``KademliaCore.handle(now, event) -> list[Action]``.

Theory of operation
-------------------
The core keeps a k-bucket routing table (routing_table.py), a record store
(records.py) and a provider store (providers.py), serves inbound requests
from them (server.py; server mode only), and runs queries (query.py), each an
iterative lookup (lookup.py) followed, for PUT_VALUE and ADD_PROVIDER, by a
write to the closest peers found.

Every outbound request gets a request id and a ``timeout_at``; the adapter
reports ResponseReceived or RequestFailed, and the core fails it itself when
the time passes (and says CancelRequest), so a peer that never answers costs
a lookup one request timeout, and the lookup's deadline caps the look-up.
A PUT_VALUE or ADD_PROVIDER query then writes to the closest peers found
(even after a timed-out look-up: a slow network still gets the record) and
lives at most one request timeout more. Late or unknown answers are counted and dropped.
A FindProviders query reports each provider as it learns it
(ProvidersProgress), so a caller can use the first while the lookup goes on
and end it with CancelQuery once it has enough (any read query can be
ended so; a put or provide cannot: its records still get written).

The table learns from evidence of liveness: a connection from a DHT server,
a request from one, an answer to our request. A full bucket pings its
least-recently-seen entry before anything is evicted (PingPeer), within the
node's check budget (``ping_rate``, ``ping_burst``); requests
that fail ``max_failures`` times in a row evict an entry and promote a
replacement.

Timers (all run by whatever handle() call comes after them; Tick is enough):
request timeouts, slow marks (lookup requests unanswered after
``slow_after`` free their α slots once all of a path's are, and the lookup
asks the next candidates beside them, so a starved or unreachable peer delays the lookup's progress by
``slow_after``, not the request timeout; the termination rule still waits
for it if it is among the k closest; ``slow_after`` None learns it from
this node's answered requests, slow_timer.py), query deadlines, bucket refresh (stale buckets get a
lookup of a random key in their range, a few per check, each due time
jittered so that nodes that joined together do not refresh together), provider republish (22 h), and the
sweep of expired records and providers. ``next_deadline()`` says when the
next is due and an ArmTimer action says when that changed.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from agentp2p.network.ratelimit import PeerRateLimiter

from .codec import DEFAULT_LIMITS, CodecError, Limits, Message, MessageType, Peer, Record, decode_message
from .config import KademliaConfig, Mode
from .events import (
    Action,
    AddAddresses,
    ArmTimer,
    Bootstrap,
    CancelQuery,
    CancelRequest,
    CloseRequest,
    FindPeer,
    FindProviders,
    GetValue,
    Input,
    LocalAddrs,
    PeerConnected,
    PeerDisconnected,
    PeerFound,
    PingPeer,
    Provide,
    ProvidersProgress,
    PutValue,
    QueryError,
    QueryFinished,
    QueryId,
    QueryStats,
    RequestFailed,
    RequestId,
    RequestReceived,
    ResponseReceived,
    RoutingUpdated,
    SendRequest,
    SendResponse,
    StartLookup,
    StopProviding,
    Tick,
)
from .keys import kad_key, random_peer_id_in_bucket
from .lookup import Lookup
from .providers import LocalProvides, ProviderStore
from .query import MAX_PROVIDERS_RESULT, Kind, Query
from .records import NamespacedValidator, Put, Quota, RecordStore, Validator
from .lost import LostPeers
from .slow_timer import SlowTimer
from .routing_table import RoutingTable, Update
from .server import Served, answer


@dataclass(slots=True)
class KademliaStats:
    """Counters of what was served, refused or dropped (never raised)."""

    served: dict[str, int] = field(default_factory=dict)  # request type -> answered
    refused: dict[str, int] = field(default_factory=dict)  # reason -> inbound requests refused
    malformed: int = 0  # undecodable inbound requests or answers
    unsolicited: int = 0  # answers to requests we no longer wait for
    timeouts: int = 0  # outbound requests the core timed out
    queries_refused: int = 0  # max_queries reached
    evictions: int = 0  # table entries dropped (failed pings / requests)
    cancelled: int = 0  # queries the caller ended early (CancelQuery)
    slow: int = 0  # lookup requests that gave up their α slot (slow_after)
    reconnects: int = 0  # pings to peers the table lost to failures (lost.py)
    reconnected: int = 0  # ... that answered: back in the table
    pings_skipped: int = 0  # liveness checks not sent: the ping budget was spent
    #: Outbound requests by purpose (lookup, write, ping, correction,
    #: reconnect): what the DHT spent its requests on (not its dials: most
    #: requests go over connections already open).
    requests: dict[str, int] = field(default_factory=dict)

    def count(self, d: dict[str, int], key: str) -> None:
        d[key] = d.get(key, 0) + 1


@dataclass(slots=True)
class _Pending:
    peer: bytes
    qid: QueryId | None  # None: a ping or a correction, owned by no query
    purpose: str  # "lookup" | "write" | "ping" | "correction" | "reconnect"
    timeout_at: float
    expect: MessageType | None  # the answer's type; None: no answer expected
    addrs: tuple[bytes, ...] = ()  # a reconnect's: where the lost peer was dialed
    sent_at: float = 0.0  # a lookup request's: when it was sent (the slow timer's samples)


class KademliaCore:
    """One node's Kademlia state. Pure: no I/O, no clock, no tasks."""

    def __init__(
        self,
        local_peer: bytes,
        *,
        rng: random.Random,
        now: float,
        config: KademliaConfig | None = None,
        validator: Validator | None = None,
        record_quota: Quota | None = None,
        provider_quota: Quota | None = None,
        limits: Limits = DEFAULT_LIMITS,
        local_addrs: Iterable[bytes] = (),
    ) -> None:
        """``validator`` checks and ranks records (default: a NamespacedValidator
        with no namespaces, which refuses every record); the quotas bound what
        each peer can make us store (None: only the node-wide caps)."""
        c = self.cfg = config or KademliaConfig()
        self.local_peer = local_peer
        self.local_addrs = tuple(local_addrs)[: c.max_addrs]
        self.limits = limits
        self.stats = KademliaStats()
        self._rng = rng
        self._now = now
        self.table = RoutingTable(local_peer, k=c.k, replacement_cache=c.replacement_cache,
                                  max_addrs=c.max_addrs, now=now)
        self._ping_budget = PeerRateLimiter(c.ping_rate, c.ping_burst, max_peers=1)  # one key: the node's
        self.records = RecordStore(validator or NamespacedValidator({}), max_records=c.max_records,
                                   ttl=c.record_ttl, quota=record_quota)
        self.providers = ProviderStore(ttl=c.provider_ttl, max_keys=c.max_providers_keys,
                                       max_per_key=c.max_providers_per_key, quota=provider_quota)
        self.local_provides = LocalProvides(republish=c.provider_republish, max_keys=c.max_local_provides)
        self._connected: dict[bytes, tuple[tuple[bytes, ...], bool]] = {}  # peer -> (addrs, is_server)
        self._served = Served(c, self.table, self.records, self.providers, self._connected)
        self._queries: dict[QueryId, Query] = {}
        self._pending: dict[RequestId, _Pending] = {}
        #: (timeout_at, request id) of every pending request, earliest first;
        #: entries of requests already answered or cancelled are skipped when
        #: they come up (so neither the timeout sweep nor next_deadline()
        #: walks every pending request on every event). It holds at most the
        #: requests sent within the last request/ping timeout.
        self._timeouts: list[tuple[float, int]] = []
        #: (slow_at, request id) of lookup requests, earliest first; skipped
        #: like _timeouts once answered.
        self._slow: list[tuple[float, int]] = []
        self.slow_timer = SlowTimer(floor=min(c.slow_floor, c.request_timeout), ceiling=c.request_timeout)
        self._next_rid = 0
        self._next_internal = 0
        self._next_refresh = now + c.refresh_check_interval
        #: the self-lookup of the last Bootstrap; when it ends, every bucket is
        #: refreshed once (see _refresh_all).
        self._bootstrap_qid: QueryId | None = None
        self._next_cleanup = now + c.cleanup_interval
        self.lost = LostPeers(max_peers=c.max_lost if c.reconnect_interval > 0 else 0,
                              forget_after=c.lost_forget_after)
        self._next_reconnect = now + c.reconnect_interval
        self._armed: float | None = None

    # ------------------------------------------------------------------ API

    def next_deadline(self) -> float:
        """When handle(now, Tick()) should next be called."""
        t = min(self._next_refresh, self._next_cleanup)
        nd = self.local_provides.next_due()
        if nd is not None:
            t = min(t, nd)
        for h in (self._timeouts, self._slow):
            while h and h[0][1] not in self._pending:
                heapq.heappop(h)  # answered or cancelled meanwhile
            if h:
                t = min(t, h[0][0])
        for q in self._queries.values():
            if not q.writing:
                t = min(t, q.deadline)
        if self.lost:
            t = min(t, self._next_reconnect)
        return t

    def query_count(self) -> int:
        return len(self._queries)

    def pending_count(self) -> int:
        return len(self._pending)

    def slow_after(self) -> float:
        """Seconds after which a lookup request sent now frees its α slot (0: never)."""
        s = self.cfg.slow_after
        s = self.slow_timer.threshold() if s is None else s
        return s if s < self.cfg.request_timeout else 0.0  # the request times out first

    def set_mode(self, mode: Mode) -> None:
        """Serve (SERVER) or only ask (CLIENT) from now on: AutoNAT's verdict."""
        self.cfg = dataclasses.replace(self.cfg, mode=mode)

    def handle(self, now: float, event: Input) -> list[Action]:
        if now > self._now:
            self._now = now
        out: list[Action] = []
        match event:
            case Tick():
                pass
            case RequestReceived():
                self._on_request(event, out)
            case ResponseReceived():
                self._on_response(event.request_id, event.message, out)
            case RequestFailed():
                self._on_failure(event.request_id, out)
            case PeerConnected():
                self._on_connected(event, out)
            case PeerDisconnected():
                self._connected.pop(event.peer, None)
            case LocalAddrs():
                self.local_addrs = tuple(event.addrs)[: self.cfg.max_addrs]
            case StartLookup():
                self._start(event.query_id, Kind.FIND_NODE, event.key, out)
            case FindPeer():
                self._find_peer(event, out)
            case GetValue():
                self._get_value(event, out)
            case PutValue():
                self._put_value(event, out)
            case Provide():
                self._provide(event.query_id, event.key, out, internal=False)
            case StopProviding():
                self.local_provides.remove(event.key)
            case FindProviders():
                self._find_providers(event, out)
            case CancelQuery():
                q = self._queries.get(event.query_id)
                if q is not None and not q.internal and q.kind not in (Kind.PUT_VALUE, Kind.ADD_PROVIDER):
                    self.stats.cancelled += 1
                    self._finish(q, out, cancelled=True)
            case Bootstrap():
                self._bootstrap(event, out)
        self._run_due(out)
        at = self.next_deadline()
        if at != self._armed:
            self._armed = at
            out.append(ArmTimer(at))
        return out

    # ------------------------------------------------------------------ inbound

    def _on_request(self, ev: RequestReceived, out: list[Action]) -> None:
        if self.cfg.mode is Mode.CLIENT:
            self.stats.count(self.stats.refused, "client mode")
            out.append(CloseRequest(ev.peer, ev.request_id, "client mode"))
            return
        msg = ev.message
        if not isinstance(msg, Message):
            try:
                msg = decode_message(msg, self.limits)
            except CodecError as exc:
                self.stats.malformed += 1
                out.append(CloseRequest(ev.peer, ev.request_id, f"malformed: {exc}"))
                return
        conn = self._connected.get(ev.peer)
        if conn is not None and conn[1]:
            self._seen(ev.peer, conn[0], out)
        reply, refusal = answer(self._served, ev.peer, msg, self._now)
        if refusal is not None:
            self.stats.count(self.stats.refused, refusal)
            out.append(CloseRequest(ev.peer, ev.request_id, refusal))
            return
        self.stats.count(self.stats.served, msg.type.name)
        if reply is None:
            out.append(CloseRequest(ev.peer, ev.request_id, None))
        else:
            out.append(SendResponse(ev.peer, ev.request_id, reply))

    def _on_connected(self, ev: PeerConnected, out: list[Action]) -> None:
        if ev.peer == self.local_peer:
            return
        addrs = tuple(ev.addrs)[: self.cfg.max_addrs]
        if ev.peer in self._connected or len(self._connected) < self.cfg.max_connected:
            self._connected[ev.peer] = (addrs, ev.is_server)
        if ev.is_server:
            self._seen(ev.peer, addrs, out)
            return
        self.lost.discard(ev.peer)  # a client now: nothing to reconnect to
        if ev.peer in self.table:  # it went client: not routable any more
            promoted = self.table.remove(ev.peer, self._now)
            out.append(RoutingUpdated(ev.peer, False))
            if promoted is not None:
                out.append(RoutingUpdated(promoted, True))

    # ------------------------------------------------------------------ table

    def _seen(self, peer: bytes, addrs: tuple[bytes, ...], out: list[Action]) -> None:
        """Evidence that ``peer`` is a live DHT server."""
        status, ping = self.table.update(peer, addrs, self._now)
        if self.lost:
            self.lost.discard(peer)
        if status is Update.ADDED:
            out.append(RoutingUpdated(peer, True))
        if ping is not None and not self._ping_budget.allow(None, self._now):
            self.table.ping_skipped(ping)
            self.stats.pings_skipped += 1
            ping = None
        if ping is not None:
            rid = self._rid()
            at = self._now + self.cfg.ping_timeout
            self._add_pending(rid, _Pending(ping, None, "ping", at, None))
            out.append(PingPeer(ping, rid, at))

    def _evicted(self, removed: bytes | None, promoted: bytes | None, out: list[Action]) -> None:
        if removed is not None:
            self.stats.evictions += 1
            out.append(RoutingUpdated(removed, False))
        if promoted is not None:
            out.append(RoutingUpdated(promoted, True))

    # ------------------------------------------------------------------ answers

    def _on_response(self, rid: RequestId, raw: bytes | Message | None, out: list[Action]) -> None:
        p = self._pending.pop(rid, None)
        if p is None:
            self.stats.unsolicited += 1
            return
        msg = raw
        if isinstance(raw, (bytes, bytearray, memoryview)):
            try:
                msg = decode_message(bytes(raw), self.limits)
            except CodecError:
                self.stats.malformed += 1
                self._failed(p, out)
                return
        if p.purpose == "ping":
            self._evicted(*self.table.ping_result(p.peer, True, self._now), out)
            return
        if p.purpose == "reconnect":
            self.stats.reconnected += 1
            conn = self._connected.get(p.peer)
            if conn is None:
                self._seen(p.peer, p.addrs, out)  # the addresses dialed (it may have left the lost set meanwhile)
            elif conn[1]:
                self._seen(p.peer, conn[0], out)  # the connection's addresses are the fresher
            return  # (connected as a client: identify says it serves nothing)
        if p.expect is not None and (msg is None or msg.type is not p.expect):
            self.stats.malformed += 1
            self._failed(p, out)
            return
        q = self._queries.get(p.qid) if p.qid is not None else None
        if p.purpose == "lookup" and q is not None:
            assert isinstance(msg, Message)
            cap = self.cfg.max_closer_per_response
            closer = [(c.id, c.addrs[: self.cfg.max_addrs]) for c in msg.closer_peers[:cap]]
            cand = q.lookup.on_response(p.peer, closer)
            if cand is not None:
                self.slow_timer.sample(self._now - p.sent_at)
                self._seen(p.peer, cand.addrs, out)
                known = len(q.providers)
                enough = q.on_answer(cand, msg, self.records.is_valid, self.records.select)
                self._progress(q, known, out)
                if enough:
                    self._finish(q, out)
                    return
            self._advance(q, out)
        elif p.purpose == "write" and q is not None:
            self._seen(p.peer, (), out)
            q.written += 1
            q.writes_pending -= 1
            if q.writes_pending <= 0:
                self._finish(q, out)

    def _on_failure(self, rid: RequestId, out: list[Action]) -> None:
        p = self._pending.pop(rid, None)
        if p is None:
            self.stats.unsolicited += 1
            return
        self._failed(p, out)

    def _failed(self, p: _Pending, out: list[Action]) -> None:
        if p.purpose == "reconnect":
            return  # still lost: tried again later, until forgotten
        entry = self.table.get(p.peer)
        if p.purpose == "ping":
            removed, promoted = self.table.ping_result(p.peer, False, self._now)
        else:
            removed, promoted = self.table.failed(p.peer, self.cfg.max_failures, self._now)
        if removed is not None and entry is not None and self.lost.add(removed, entry.addrs, self._now) \
                and len(self.lost) == 1:
            self._next_reconnect = self._now + self.cfg.reconnect_interval  # not at once: it just failed
        self._evicted(removed, promoted, out)
        if p.purpose == "ping":
            return
        q = self._queries.get(p.qid) if p.qid is not None else None
        if q is None:
            return
        if p.purpose == "lookup":
            q.lookup.on_failure(p.peer)
            self._advance(q, out)
        elif p.purpose == "write":
            q.write_failures += 1
            q.writes_pending -= 1
            if q.writes_pending <= 0:
                self._finish(q, out)

    # ------------------------------------------------------------------ queries

    def _add_pending(self, rid: int, p: _Pending) -> None:
        self._pending[rid] = p
        self.stats.count(self.stats.requests, p.purpose)
        heapq.heappush(self._timeouts, (p.timeout_at, rid))

    def _rid(self) -> int:
        self._next_rid += 1
        return self._next_rid

    def _internal_id(self) -> QueryId:
        self._next_internal += 1
        return ("internal", self._next_internal)

    def _new_query(self, qid: QueryId, kind: Kind, key: bytes, out: list[Action], *, internal: bool,
                   quorum: int = 1) -> Query | None:
        if qid in self._queries or len(self._queries) >= self.cfg.max_queries:
            self.stats.queries_refused += 1
            if not internal:
                reason = "duplicate query id" if qid in self._queries else "too many queries"
                out.append(QueryFinished(qid, QueryError(reason), QueryStats()))
            return None
        c = self.cfg
        target = kad_key(key)
        seeds = [(e.peer, e.addrs) for e in self.table.closest(target, c.k * c.disjoint_paths)]
        lk = Lookup(target, seeds, k=c.k, alpha=c.alpha, paths=c.disjoint_paths, max_candidates=c.max_candidates,
                    max_closer=c.max_closer_per_response, max_requests=3 * c.max_candidates,
                    max_slow=3 * c.alpha if c.max_slow is None else c.max_slow, exclude=(self.local_peer,))
        q = Query(qid, kind, key, lk, self._now, self._now + c.lookup_timeout, internal, quorum)
        self._queries[qid] = q
        return q

    def _start(self, qid: QueryId, kind: Kind, key: bytes, out: list[Action], *, internal: bool = False,
               quorum: int = 1) -> Query | None:
        q = self._new_query(qid, kind, key, out, internal=internal, quorum=quorum)
        if q is not None:
            self._advance(q, out)
        return q

    def _advance(self, q: Query, out: list[Action]) -> None:
        """Send what the lookup wants next, or move on when it is done."""
        if q.writing or q.qid not in self._queries:
            return
        if q.lookup.done:
            self._lookup_done(q, out)
            return
        room = self.cfg.max_pending_requests - len(self._pending)
        if room <= 0:
            return  # retried on the next event: requests free up or time out
        msg = q.lookup_message()
        at = self._now + self.cfg.request_timeout
        slow_after = self.slow_after()
        slow_at = self._now + slow_after
        for cand in q.lookup.next_requests(limit=room):
            rid = self._rid()
            self._add_pending(rid, _Pending(cand.peer, q.qid, "lookup", at, msg.type, sent_at=self._now))
            if 0 < slow_after < self.cfg.request_timeout:
                heapq.heappush(self._slow, (slow_at, rid))
            if cand.addrs and cand.peer not in self._connected:
                out.append(AddAddresses(cand.peer, cand.addrs))
            out.append(SendRequest(cand.peer, rid, msg, at))
        if q.lookup.done and not q.lookup.has_in_flight():
            self._lookup_done(q, out)

    def _lookup_done(self, q: Query, out: list[Action]) -> None:
        self._cancel(q, out)
        if q.kind not in (Kind.PUT_VALUE, Kind.ADD_PROVIDER):
            self._finish(q, out)
            return
        q.writing = True
        q.writing_since = self._now
        if q.kind is Kind.PUT_VALUE:
            assert q.value is not None
            msg = Message(MessageType.PUT_VALUE, key=q.key, record=Record(q.key, q.value))
        else:
            me = Peer(self.local_peer, self.local_addrs)
            msg = Message(MessageType.ADD_PROVIDER, key=q.key, provider_peers=(me,))
        at = self._now + self.cfg.request_timeout
        for cand in q.lookup.closest(self.cfg.replication):
            if len(self._pending) >= self.cfg.max_pending_requests:
                q.write_failures += 1
                continue
            rid = self._rid()
            expect = MessageType.PUT_VALUE if q.kind is Kind.PUT_VALUE else None
            self._add_pending(rid, _Pending(cand.peer, q.qid, "write", at, expect))
            q.writes_pending += 1
            q.write_requests += 1
            out.append(SendRequest(cand.peer, rid, msg, at, expect_response=expect is not None))
        if q.writes_pending == 0:
            self._finish(q, out)

    @staticmethod
    def _progress(q: Query, known: int, out: list[Action]) -> None:
        """Report the providers ``q`` learned past the first ``known``."""
        if q.kind is Kind.GET_PROVIDERS and not q.internal and len(q.providers) > known:
            new = list(q.providers.items())[known:]
            out.append(ProvidersProgress(q.qid, tuple(Peer(p, a) for p, a in new)))

    def _cancel(self, q: Query, out: list[Action]) -> None:
        """Forget the query's outstanding requests (their answers are no longer needed)."""
        for rid in [r for r, p in self._pending.items() if p.qid == q.qid]:
            del self._pending[rid]
            out.append(CancelRequest(rid))

    def _finish(self, q: Query, out: list[Action], *, cancelled: bool = False) -> None:
        self._cancel(q, out)
        del self._queries[q.qid]
        if not cancelled:  # a lookup cut short says nothing about the bucket's freshness
            self._mark_refreshed(q.lookup.target)
        if q.qid == self._bootstrap_qid:
            self._bootstrap_qid = None
            if not cancelled:  # a join its caller gave up on (a node stopping) asks no more
                self._refresh_all(out)
        if q.kind is Kind.GET_VALUE and q.value is not None and q.outdated:
            self._correct(q, out)
        if not q.internal:
            out.append(QueryFinished(q.qid, q.result(), q.stats(self._now, q.timed_out)))

    def _correct(self, q: Query, out: list[Action]) -> None:
        """Send the best value to the peers that returned a worse one (spec: entry correction)."""
        assert q.value is not None
        msg = Message(MessageType.PUT_VALUE, key=q.key, record=Record(q.key, q.value))
        at = self._now + self.cfg.request_timeout
        for peer in dict.fromkeys(q.outdated):
            if len(self._pending) >= self.cfg.max_pending_requests:
                break
            rid = self._rid()
            self._add_pending(rid, _Pending(peer, None, "correction", at, MessageType.PUT_VALUE))
            out.append(SendRequest(peer, rid, msg, at))

    # ------------------------------------------------------------------ query kinds

    def _find_peer(self, ev: FindPeer, out: list[Action]) -> None:
        known = self._connected.get(ev.peer)
        entry = self.table.get(ev.peer)
        addrs = known[0] if known is not None and known[0] else (entry.addrs if entry is not None else ())
        if addrs:
            out.append(QueryFinished(ev.query_id, PeerFound(Peer(ev.peer, addrs)), QueryStats()))
            return
        self._start(ev.query_id, Kind.FIND_PEER, ev.peer, out)

    def _get_value(self, ev: GetValue, out: list[Action]) -> None:
        q = self._new_query(ev.query_id, Kind.GET_VALUE, ev.key, out, internal=False, quorum=max(1, ev.quorum))
        if q is None:
            return
        rec = self.records.get(ev.key, self._now)
        if rec is not None:
            q.add_value(None, rec.value, self.records.select)
            if q.value_count >= q.quorum:
                self._finish(q, out)
                return
        self._advance(q, out)

    def _put_value(self, ev: PutValue, out: list[Action]) -> None:
        outcome = self.records.put(ev.key, ev.value, self._now, None)
        if outcome in (Put.INVALID, Put.OUTDATED):
            reason = "invalid record" if outcome is Put.INVALID else "a better record is stored"
            out.append(QueryFinished(ev.query_id, QueryError(reason), QueryStats()))
            return
        q = self._new_query(ev.query_id, Kind.PUT_VALUE, ev.key, out, internal=False, quorum=max(1, ev.quorum))
        if q is not None:
            q.value = ev.value
            self._advance(q, out)

    def _provide(self, qid: QueryId, key: bytes, out: list[Action], *, internal: bool) -> None:
        self.providers.add(key, self.local_peer, self.local_addrs, self._now, local=True)
        if not self.local_provides.add(key, self._now):
            out.append(QueryFinished(qid, QueryError("too many provided keys"), QueryStats()))
            return
        self._start(qid, Kind.ADD_PROVIDER, key, out, internal=internal)

    def _find_providers(self, ev: FindProviders, out: list[Action]) -> None:
        count = max(1, min(ev.count, MAX_PROVIDERS_RESULT))
        q = self._new_query(ev.query_id, Kind.GET_PROVIDERS, ev.key, out, internal=False, quorum=count)
        if q is None:
            return
        for r in self.providers.get(ev.key, self._now, count):
            q.providers[r.peer] = r.addrs
        self._progress(q, 0, out)
        if len(q.providers) >= count:
            self._finish(q, out)
            return
        self._advance(q, out)

    # ------------------------------------------------------------------ timers

    def _run_due(self, out: list[Action]) -> None:
        now = self._now
        h = self._timeouts
        while h and h[0][0] <= now:
            _, rid = heapq.heappop(h)
            p = self._pending.pop(rid, None)
            if p is None:
                continue  # answered or cancelled meanwhile
            self.stats.timeouts += 1
            out.append(CancelRequest(rid))
            self._failed(p, out)
        h = self._slow
        while h and h[0][0] <= now:
            _, rid = heapq.heappop(h)
            p = self._pending.get(rid)
            q = self._queries.get(p.qid) if p is not None and p.qid is not None else None
            freed = q.lookup.on_slow(p.peer) if q is not None and not q.writing else 0
            if freed:
                self.stats.slow += freed
                self._advance(q, out)
        for q in [q for q in self._queries.values() if not q.writing and q.deadline <= now]:
            if q.qid in self._queries:
                q.timed_out = True
                self._lookup_done(q, out)
        for q in [q for q in self._queries.values() if not q.writing and not q.lookup.has_in_flight()]:
            self._advance(q, out)  # one held back by max_pending_requests
        if now >= self._next_refresh:
            self._next_refresh = now + self.cfg.refresh_check_interval
            self._refresh(self.cfg.refresh_interval, out, limit=self.cfg.max_refreshes_per_check)
        for key in self.local_provides.due(now):
            if len(self._queries) >= self.cfg.max_queries:
                break  # due() rescheduled it: retried next interval
            self._provide(self._internal_id(), key, out, internal=True)
        if self.cfg.reconnect_interval and now >= self._next_reconnect:
            self._next_reconnect = now + self.cfg.reconnect_interval
            self._reconnect(out)
        if now >= self._next_cleanup:
            self._next_cleanup = now + self.cfg.cleanup_interval
            self.records.expire(now)
            self.providers.expire(now)

    def _reconnect(self, out: list[Action]) -> None:
        """Ping one peer lost to failures (lost.py); an answer puts it back."""
        if not self.lost or len(self._pending) >= self.cfg.max_pending_requests:
            return
        got = self.lost.pick(self._now, self._rng)
        if got is None or any(p.peer == got[0] and p.purpose == "reconnect" for p in self._pending.values()):
            return
        peer, addrs = got
        rid = self._rid()
        at = self._now + self.cfg.ping_timeout
        self._add_pending(rid, _Pending(peer, None, "reconnect", at, None, addrs))
        self.stats.reconnects += 1
        if peer not in self._connected:  # (an open connection's addresses are fresher)
            out.append(AddAddresses(peer, addrs))
        out.append(PingPeer(peer, rid, at))

    def _bootstrap(self, event: Bootstrap, out: list[Action]) -> None:
        """The self-lookup; its end (in _finish) refreshes every bucket."""
        internal = event.query_id is None
        qid = self._internal_id() if event.query_id is None else event.query_id
        ours = qid not in self._queries  # a duplicate ID is refused: never mark another's query
        before = self._bootstrap_qid
        if ours:
            self._bootstrap_qid = qid  # before the start: a lookup with no one to ask ends inside it
        if self._start(qid, Kind.FIND_NODE, self.local_peer, out, internal=internal) is None and ours:
            self._bootstrap_qid = before  # refused (too many queries): one under way still counts

    def _refresh_all(self, out: list[Action]) -> None:
        """After the join's self-lookup: one lookup per bucket down to one past
        the deepest filled, stale or not (as go-libp2p-kad-dht's bootstrap does).
        The self-lookup only learns our own neighbourhood; without this a young
        node routes short of regions that filled up before it joined until its
        first periodic refresh (measured in the simulator: 1.6 % of lookups at
        10,000 nodes missed the closest node)."""
        self._refresh(-math.inf, out, limit=None)  # a mark jittered into the future too

    def _refresh(self, stale_after: float, out: list[Action], *, limit: int | None) -> None:
        """One lookup for a random key in each bucket untouched for ``stale_after`` s,
        the stalest first, at most ``limit`` of them (None: all)."""
        stale = self.table.stale_buckets(self._now, stale_after, self.cfg.max_refresh_cpl)
        for cpl in stale[:limit]:
            if len(self._queries) >= self.cfg.max_queries:
                break  # the rest stay stale: the next periodic check takes them
            self._mark_refreshed(self._bucket_key(cpl))
            target = random_peer_id_in_bucket(self.table.local_key, cpl, self._rng)
            self._start(self._internal_id(), Kind.FIND_NODE, target, out, internal=True)

    def _mark_refreshed(self, target: bytes) -> None:
        """``target``'s bucket had a lookup now; its next refresh falls due one
        interval on, give or take ``refresh_jitter`` of it (config.py says why)."""
        j = self.cfg.refresh_jitter * self.cfg.refresh_interval
        self.table.mark_refreshed(target, self._now + (self._rng.uniform(-j, j) if j else 0.0))

    def _bucket_key(self, cpl: int) -> bytes:
        """A hashed key in bucket ``cpl``: ours with bit ``cpl`` flipped."""
        n = int.from_bytes(self.table.local_key, "big") ^ (1 << (255 - cpl))
        return n.to_bytes(32, "big")
