"""The Kademlia adapter: runs a :class:`~.core.KademliaCore` on real streams, with trio.

The core decides everything (whom to ask, what to answer, when a request or
a query is over); this module moves bytes, keeps time and reports what
happened. Per node:

* **Serving.** Each configured protocol ID (``/agentp2p/kad/1.0.0`` by
  default, ``/ipfs/kad/1.0.0`` for the public network, or both) is served
  through the node's contained handler registration; a client serves
  nothing. One inbound stream carries successive requests until the peer
  closes it (or leaves it idle for ``idle_timeout``). Bounded per peer: at
  most ``max_inbound_streams_per_peer`` streams at once and a token bucket
  of requests per second (over it: the stream is reset, counted and a light
  offence). A length prefix over the codec's limit is refused before the
  body is read; an undecodable message resets the stream and is an offence
  of the peer. Nothing a peer sends raises out of the handler.
* **Asking.** Each SendRequest/PingPeer runs in a task: one reused stream
  per peer (:class:`~.streams.PeerSender`), opened through the node's one
  dialer without its DHT fallback (the DHT must not ask itself), bounded by
  the core's ``timeout_at``. A CancelRequest drops the answer; an exchange
  already on the wire is left to finish (or to hit its deadline) so the
  stream stays in step, one still waiting for the stream is cancelled.
* **Feeding.** Connections (node events) plus identify tell the core who is
  there and whether it is a DHT server (it lists one of our protocols); when
  the library's one identify attempt per connection was lost (it gives up
  silently on a busy process), we ask identify ourselves (``identify=``);
  when evictions thin the table below k, connected servers are offered
  again (go's fixLowPeers: on a starved CPU live peers time out);
  a timer task sleeps until the core's next deadline (ArmTimer) and Ticks.
  Every input goes through :meth:`KademliaService._feed`, which runs the
  core's actions — and the inputs they cause at once — to completion
  without awaiting, so the core is never re-entered.
* **Queries.** :meth:`KademliaService.query` hands the core a query with a
  fresh id and waits for its QueryFinished; the core's lookup deadline
  bounds it, whatever peers do.

Peer IDs are bytes in the core and ``ID`` here; addresses are multiaddr
bytes on the wire (without ``/p2p/``) and ``Multiaddr`` in the peerstore.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.network.framing import FrameError
from agentp2p.network.ratelimit import PeerRateLimiter
from agentp2p.throttled_log import ThrottledLog

from .codec import CodecError, Limits, Message, MessageType, Peer, decode_message, encode_message
from .config import KademliaConfig, Mode
from .core import KademliaCore
from .events import (
    Action,
    AddAddresses,
    ArmTimer,
    CancelQuery,
    CancelRequest,
    CloseRequest,
    Input,
    LocalAddrs,
    PeerConnected,
    PeerDisconnected,
    PingPeer,
    ProvidersProgress,
    QueryFinished,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    RoutingUpdated,
    SendRequest,
    SendResponse,
    Tick,
)
from .records import Put, Quota, Validator
from .streams import Abandoned, MessageStream, PeerSender, SenderStats, Ticket, reset_quietly

log = logging.getLogger("agentp2p.dht")

__all__ = ["KademliaService", "KademliaStopped", "ServiceStats", "wire_addrs", "from_wire_addrs"]

#: Offence weights (the penalty box bans at 20 points, halving each minute).
MALFORMED_WEIGHT = 1.0
OVERSIZED_WEIGHT = 5.0
RATE_WEIGHT = 0.5
#: How long a new connection's identify is waited for before the peer is taken for a non-server.
IDENTIFY_WAIT = 60.0
#: PUT_VALUE of a record the validator refused (server.py's refusal text), and its offence weight.
INVALID_RECORD = f"record {Put.INVALID.value}"
INVALID_RECORD_WEIGHT = 1.0
#: Requests that store something here, and their resource in the policy's store rules.
_STORE_RESOURCES = {MessageType.PUT_VALUE: "value", MessageType.ADD_PROVIDER: "provider"}
#: With no protocols in the peerstore this long after a connection (or after
#: our last attempt), we run identify ourselves; each attempt is bounded by
#: IDENTIFY_ASK_TIMEOUT.
IDENTIFY_ASK_AFTER = 5.0
IDENTIFY_ASK_TIMEOUT = 10.0
#: How often the table is topped up from live connections at the latest
#: (go-libp2p-kad-dht's fixLowPeers), and the shortest gap between two top-ups.
REFILL_INTERVAL = 60.0
REFILL_GAP = 5.0
#: The shortest gap between two timer Ticks (a core whose deadline is already
#: past, e.g. requests held back by max_pending_requests, is not spun on).
MIN_TICK_GAP = 0.01


class KademliaStopped(Exception):
    """The service is not running (not started yet, or stopped mid-query)."""


@dataclass
class ServiceStats:
    """What the adapter did (``node.stats()["dht"]["adapter"]``)."""

    inbound_streams: int = 0
    inbound_requests: int = 0
    streams_refused: int = 0  # over max_inbound_streams_per_peer
    rate_limited: int = 0  # requests over the per-peer rate (stream reset)
    malformed: int = 0  # inbound requests that did not decode (stream reset, offence)
    oversized: int = 0  # inbound length prefixes over the codec limit (stream reset, offence)
    refused: int = 0  # requests the core refused (stream reset; ADD_PROVIDER: skipped)
    refused_policy: int = 0  # ... of which the authorization policy's store rules refused
    invalid_records: int = 0  # ... of which PUT_VALUEs of records the validator refused (an offence)
    idle_closed: int = 0  # inbound streams reset after idle_timeout
    responses: int = 0  # answers written
    pings: int = 0  # liveness checks sent
    dropped_answers: int = 0  # answers of requests the core had cancelled
    expired_waiting: int = 0  # deadlines that came while the request queued behind another to the same peer
    abandoned_holding: int = 0  # requests the core cancelled while holding the stream (opening it, or on the wire)
    refilled: int = 0  # connected servers offered again to a thinned table
    identify_asked: int = 0  # identify run by us: the library's attempt had not filled the peerstore
    identify_failed: int = 0  # ... and ours failed too (timed out, refused, garbage)
    reidentified: int = 0  # connected peers still unidentified when the table was topped up: identify again
    assumed_servers: int = 0  # bootstrap peers put in the table on connecting, before identify

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def wire_addrs(addrs: Iterable[Multiaddr | str]) -> tuple[bytes, ...]:
    """Multiaddrs as the wire carries them: binary, without the peer's own
    ``/p2p/`` suffix, each once. A circuit (``/…/p2p/<relay>/p2p-circuit``)
    keeps its relay: cut at the first ``/p2p/`` it would become the relay's
    own address, where a handshake as the peer can only fail."""
    out: dict[bytes, None] = {}
    for a in addrs:
        with contextlib.suppress(Exception):
            text = str(a)
            if "/p2p-circuit" in text:
                base = text.split("/p2p-circuit", 1)[0] + "/p2p-circuit"
            else:
                base = text.split("/p2p/", 1)[0]
            if base:
                out[Multiaddr(base).to_bytes()] = None
    return tuple(out)


def from_wire_addrs(raw: Iterable[bytes]) -> list[Multiaddr]:
    """Parse wire addresses; a peer's garbage is skipped, never raised."""
    out: list[Multiaddr] = []
    for b in raw:
        with contextlib.suppress(Exception):
            out.append(Multiaddr(b))
    return out


class _Request(Ticket):
    """One outbound request in flight (``abandoned``: the core cancelled it,
    its answer is dropped)."""

    __slots__ = ("peer", "scope", "started")

    def __init__(self, peer: ID) -> None:
        super().__init__()
        self.peer = peer
        self.scope: trio.CancelScope | None = None
        self.started = False  # holds the stream: cancelling now would cost it

    def mark_started(self) -> None:
        self.started = True


class _Waiter:
    __slots__ = ("done", "result", "progress")

    def __init__(self, progress: Callable[[ProvidersProgress], None] | None) -> None:
        self.done = trio.Event()
        self.result: QueryFinished | None = None
        self.progress = progress


class _Locating:
    """Addresses the network gave for a peer being located."""

    __slots__ = ("found", "addrs", "users")

    def __init__(self) -> None:
        self.found = trio.Event()
        self.addrs: dict[bytes, None] = {}
        self.users = 0


class KademliaService:
    """One node's running Kademlia DHT (see the module doc)."""

    def __init__(
        self,
        *,
        local_peer: ID,
        config: KademliaConfig,
        protocols: Sequence[str],
        dialer: Any,
        host: Any,
        events: Any,
        validator: Validator,
        record_quota: Quota | None = None,
        provider_quota: Quota | None = None,
        limits: Limits = Limits(),
        offence: Callable[[ID, str, float], None] | None = None,
        local_addrs: Callable[[], Iterable[Multiaddr]] = lambda: (),
        inbound_rate: float = 100.0,
        inbound_burst: int = 200,
        max_inbound_streams_per_peer: int = 8,
        idle_timeout: float = 60.0,
        outbound_idle: float = 30.0,
        rng: random.Random | None = None,
        identify: Callable[[ID, float], Awaitable[Sequence[str]]] | None = None,
        authorizer: Any = None,
        assume_servers: Iterable[ID] = (),
    ) -> None:
        if not protocols:
            raise ValueError("at least one DHT protocol ID is needed")
        self.local_peer = local_peer
        self.config = config
        self.protocols = list(protocols)
        self.limits = limits
        self.server = config.mode is Mode.SERVER
        self._set_handler: Callable[[str, Any], None] = lambda _p, _h: None
        self._remove_handler: Callable[[str], None] | None = None
        self._dialer = dialer
        self._host = host
        self._events = events
        #: Tells the connection manager that a request used a connection (see ConnectionEvents.used).
        self._used: Callable[[ID], None] = getattr(events, "used", None) or (lambda _peer: None)
        self._offence = offence
        self._local_addrs = local_addrs
        self._idle_timeout = idle_timeout
        self._outbound_idle = outbound_idle
        self._max_inbound = max_inbound_streams_per_peer
        self._rate = PeerRateLimiter(inbound_rate, inbound_burst, max_peers=16384)
        self._rng = rng or random.Random()
        #: ``identify(peer, timeout) -> protocols`` over the open connection,
        #: filling the peerstore (network/identify.py); None: wait for the library's only.
        self._identify = identify
        #: Peers taken for DHT servers the moment they connect (the configured
        #: bootstrap peers): a newcomer's first lookup need not wait for
        #: identify. Identify still runs, and a peer it shows serving no DHT
        #: leaves the table.
        self._assume_servers = frozenset(assume_servers)
        self._validator = validator
        self._quotas = (record_quota, provider_quota)
        #: The node's policy (agentp2p.contract.Authorizing): who may store values and provider records here.
        self._authorizer = authorizer
        #: Built when the service starts (the core's clock is trio's, which
        #: only exists inside trio.run); None until then.
        self.core: KademliaCore | None = None
        self.stats = ServiceStats()
        self.sender_stats = SenderStats()
        self.running = False
        self._nursery: trio.Nursery | None = None
        self._queue: deque[Input] = deque()
        self._feeding = False
        self._qids = itertools.count(1)
        self._rids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._replies: dict[tuple[str, int], SendResponse | CloseRequest | None] = {}
        self._requests: dict[Any, _Request] = {}
        self._senders: dict[ID, PeerSender] = {}
        self._inbound: dict[ID, int] = {}
        self._locating: dict[bytes, _Locating] = {}
        self._timer_at = float("inf")
        self._timer_scope: trio.CancelScope | None = None
        self._last_local_addrs: tuple[bytes, ...] | None = None
        self.table_changed = trio.Event()
        self._table_low = trio.Event()
        self._identifying: set[ID] = set()  # peers an _identified task is waiting on
        self._log = ThrottledLog(log, interval=30.0)

    # ------------------------------------------------------------------ wiring

    def attach(self, set_stream_handler: Callable[[str, Any], None],
               remove_stream_handler: Callable[[str], None] | None = None) -> None:
        """Register our handlers (server mode only: a client serves nothing)."""
        self._set_handler, self._remove_handler = set_stream_handler, remove_stream_handler
        if self.server:
            for protocol in self.protocols:
                set_stream_handler(protocol, self._serve)

    def set_server(self, on: bool) -> bool:
        """Switch between server and client mode at run time (AutoNAT's
        verdict); True if the mode changed. A client's handlers go, so its
        protocols (identify) stop listing Kademlia and peers stop adding it
        to their tables; the core refuses what still arrives."""
        if on == self.server or self._remove_handler is None:
            return False
        self.server = on
        for protocol in self.protocols:
            if on:
                self._set_handler(protocol, self._serve)
            else:
                self._remove_handler(protocol)
        mode = Mode.SERVER if on else Mode.CLIENT
        self.config = dataclasses.replace(self.config, mode=mode)
        if self.core is not None:
            self.core.set_mode(mode)
        return True

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: the timer, the connection feed and every request task."""
        if self.running or self.core is not None:
            raise RuntimeError("a KademliaService runs once")
        self.core = KademliaCore(
            self.local_peer.to_bytes(),
            rng=self._rng,
            now=trio.current_time(),
            config=self.config,
            validator=self._validator,
            record_quota=self._quotas[0],
            provider_quota=self._quotas[1],
            limits=self.limits,
        )
        events = self._events.subscribe() if self._events is not None else None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.running = True
                self._feed(Tick())  # arms the timer
                nursery.start_soon(self._timer)
                if events is not None:
                    nursery.start_soon(self._watch_connections, events)
                    nursery.start_soon(self._refill)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.running = False
            self._nursery = None
            for w in self._waiters.values():
                w.done.set()  # result None: stopped
            if events is not None:
                with contextlib.suppress(Exception):
                    events.close()

    # ------------------------------------------------------------------ the core

    def _feed(self, event: Input) -> None:
        """Hand ``event`` to the core and carry out its actions (never awaits).

        Inputs caused by carrying out an action (a request that fails at
        once) are queued and handled in turn, so the core is never re-entered.
        """
        self._queue.append(event)
        if self._feeding:
            return
        self._feeding = True
        try:
            core = self.core
            if core is None:
                raise KademliaStopped("the DHT is not running")
            while self._queue:
                ev = self._queue.popleft()
                for action in core.handle(trio.current_time(), ev):
                    self._execute(action)
        finally:
            self._feeding = False

    def _execute(self, a: Action) -> None:
        if isinstance(a, SendRequest):
            self._start_request(a.peer, a.request_id, encode_message(a.message), a.expect_response, a.timeout_at)
        elif isinstance(a, AddAddresses):
            self._learned(a.peer, a.addrs)
        elif isinstance(a, CancelRequest):
            req = self._requests.get(a.request_id)
            if req is not None:
                sender = self._senders.get(req.peer)
                if req.started and sender is not None:
                    self.stats.abandoned_holding += 1
                    sender.abandon(req)  # not sent yet: it won't be; on the wire: cut if another waits
                else:
                    req.abandoned = True
                    if req.scope is not None:
                        req.scope.cancel()
        elif isinstance(a, (SendResponse, CloseRequest)):
            if a.request_id in self._replies:
                self._replies[a.request_id] = a
        elif isinstance(a, QueryFinished):
            w = self._waiters.get(a.query_id)  # type: ignore[call-overload]
            if w is not None:
                w.result = a
                w.done.set()
        elif isinstance(a, ProvidersProgress):
            w = self._waiters.get(a.query_id)  # type: ignore[call-overload]
            if w is not None and w.progress is not None and w.result is None:
                try:
                    w.progress(a)
                except Exception:  # noqa: BLE001 - a caller's bug must not stop the core's actions
                    log.exception("provider progress callback failed")
        elif isinstance(a, ArmTimer):
            self._timer_at = a.at
            if self._timer_scope is not None:
                self._timer_scope.deadline = a.at
        elif isinstance(a, PingPeer):
            self.stats.pings += 1
            self._start_request(a.peer, a.request_id, encode_message(Message(MessageType.PING)), True, a.timeout_at)
        elif isinstance(a, RoutingUpdated):
            self.table_changed.set()
            self.table_changed = trio.Event()
            if not a.added and self.table_size() < self.config.k:
                self._table_low.set()

    async def _timer(self) -> None:
        last = trio.current_time()
        while True:
            with trio.CancelScope(deadline=max(self._timer_at, last + MIN_TICK_GAP)) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            last = trio.current_time()
            self.refresh_local_addrs()  # listen addresses appear once the node listens
            self._feed(Tick())

    # ------------------------------------------------------------------ queries

    async def query(self, make: Callable[[int], Input],
                    progress: Callable[[ProvidersProgress], None] | None = None) -> QueryFinished:
        """Start the query ``make(query_id)`` and wait for its QueryFinished.

        ``progress`` is called (synchronously, so it must not block) with
        each ProvidersProgress of the query. Cancelling the caller ends a
        read query (CancelQuery): its requests are cancelled, not left to
        time out. A put or provide goes on: the network still gets the record.
        """
        if not self.running:
            raise KademliaStopped("the DHT is not running")
        qid = next(self._qids)
        w = self._waiters[qid] = _Waiter(progress)
        try:
            self._feed(make(qid))
            await w.done.wait()
        finally:
            if w.result is None and self.running and self.core is not None:
                try:
                    self._feed(CancelQuery(qid))
                except Exception:  # noqa: BLE001 - never in place of the caller's cancellation
                    log.exception("cancelling query %s failed", qid)
            self._waiters.pop(qid, None)
        if w.result is None:
            raise KademliaStopped("the DHT stopped")
        return w.result

    def feed(self, event: Input) -> None:
        """An input that starts no query of ours (Bootstrap, StopProviding...)."""
        self._feed(event)

    def refresh_local_addrs(self) -> None:
        """Tell the core our listen addresses if they changed (sent in ADD_PROVIDER)."""
        addrs = wire_addrs(self._local_addrs())
        if addrs != self._last_local_addrs:
            self._last_local_addrs = addrs
            self._feed(LocalAddrs(addrs))

    @contextlib.contextmanager
    def locating(self, peer: bytes) -> Any:
        """While open: addresses the lookups learn for ``peer`` are collected,
        and no request dials ``peer`` (the dialer asking us is dialing it)."""
        loc = self._locating.get(peer)
        if loc is None:
            loc = self._locating[peer] = _Locating()
        loc.users += 1
        try:
            yield loc
        finally:
            loc.users -= 1
            if loc.users <= 0:
                self._locating.pop(peer, None)

    def _learned(self, peer: bytes, addrs: tuple[bytes, ...]) -> None:
        """The core is about to contact ``peer`` at ``addrs`` (from the DHT).

        They go first in the peerstore: py-libp2p 0.8.1 dials only the first
        address of each transport class it holds for a peer, so a stale
        address learnt earlier would hide the fresh one (the dialer's DHT
        fallback depends on this too).
        """
        pid = ID(peer)
        mas = from_wire_addrs(addrs)
        if mas:
            known = self._dialer.known_addrs(pid)
            if known and known[0] not in mas:
                with contextlib.suppress(Exception):
                    self._host.get_peerstore().clear_addrs(pid)
                mas = mas + [a for a in known if a not in mas]
            self._dialer.add_addrs(pid, mas)
        loc = self._locating.get(peer)
        if loc is not None and addrs:
            for a in addrs:
                loc.addrs[a] = None
            loc.found.set()

    # ------------------------------------------------------------------ asking

    def _start_request(self, peer: bytes, rid: Any, data: bytes, expect: bool, timeout_at: float) -> None:
        nursery = self._nursery
        if nursery is None:
            self._queue.append(RequestFailed(rid, "not running"))
            return
        pid = ID(peer)
        if peer in self._locating and not self._dialer.is_connected(pid):
            self._queue.append(RequestFailed(rid, "being located"))
            return
        req = self._requests[rid] = _Request(pid)
        nursery.start_soon(self._request_task, rid, pid, data, expect, timeout_at, req)

    def _request_uses(self, peer: ID) -> None:
        """A request is going to ``peer``: its connection is in use. One stream
        per peer, so that stream's open alone would say the connection is idle
        from then on; with no connection, the dial and the stream's open say so."""
        if self._dialer.is_connected(peer):
            self._used(peer)

    def _sender(self, peer: ID) -> PeerSender:
        s = self._senders.get(peer)
        if s is None:
            async def open_stream() -> Any:
                # Optimistic: the peer was named a DHT server (or is one in our
                # table), so the request rides with the protocol proposal and a
                # fresh connection does not wait for identify first.
                return await self._dialer.open_stream(peer, self.protocols, lookup=False, optimistic=True)

            s = self._senders[peer] = PeerSender(open_stream, max_message_bytes=self.limits.max_message_bytes,
                                                 max_idle=self._outbound_idle, stats=self.sender_stats)
        return s

    async def _request_task(self, rid: Any, peer: ID, data: bytes, expect: bool, timeout_at: float,
                            req: _Request) -> None:
        outcome: Input | None = None
        sender = self._sender(peer)
        started = trio.current_time()
        self._request_uses(peer)
        try:
            with trio.CancelScope(deadline=timeout_at) as scope:
                req.scope = scope
                if req.abandoned:
                    scope.cancel()
                try:
                    answer = await sender.request(data, expect, req, on_start=req.mark_started)
                    outcome = ResponseReceived(rid, answer)
                    log.debug("request to %s answered in %.3fs", peer, trio.current_time() - started)
                except Abandoned:
                    pass  # the core no longer wanted it, and it ended early for that
                except Exception as exc:  # noqa: BLE001 — dial, negotiation, reset, garbage: one failure
                    outcome = RequestFailed(rid, _why(exc))
                    log.debug("request to %s failed: %s", peer, outcome.reason)
            if scope.cancelled_caught:
                if not req.started and not req.abandoned:
                    self.stats.expired_waiting += 1
                log.debug("request to %s: %s", peer, "dropped (the core no longer needs it)" if req.abandoned
                          else "no answer by its deadline")
        finally:
            self._requests.pop(rid, None)
        if sender.idle and self._senders.get(peer) is sender and (
                sender.ms is None or not self._dialer.is_connected(peer)):
            del self._senders[peer]  # no stream, or one on a connection that is gone
            stream = sender.drop()
            if stream is not None:
                await reset_quietly(stream)
        if req.abandoned:
            if outcome is not None:
                self.stats.dropped_answers += 1
            return
        if self.running:
            self._feed(outcome if outcome is not None else RequestFailed(rid, "timed out"))

    async def request(self, peer: ID, message: Message, *, timeout: float | None = None) -> Message | None:
        """One request to one peer, outside any query (diagnostics, tests,
        single-peer stores): the decoded answer, None when ``message`` has none
        (ADD_PROVIDER). Raises on failure, like any stream error."""
        expect = message.type is not MessageType.ADD_PROVIDER
        self._request_uses(peer)
        with trio.fail_after(self.config.request_timeout if timeout is None else timeout):
            data = await self._sender(peer).request(encode_message(message), expect)
        if data is None:
            return None
        return decode_message(data, self.limits)

    # ------------------------------------------------------------------ serving

    async def _serve(self, stream: Any) -> None:
        peer: ID = stream.muxed_conn.peer_id
        if self._inbound.get(peer, 0) >= self._max_inbound:
            self.stats.streams_refused += 1
            await reset_quietly(stream)
            return
        self._inbound[peer] = self._inbound.get(peer, 0) + 1
        self.stats.inbound_streams += 1
        try:
            await self._serve_requests(peer, MessageStream(stream, self.limits.max_message_bytes))
        finally:
            left = self._inbound.get(peer, 1) - 1
            if left > 0:
                self._inbound[peer] = left
            else:
                self._inbound.pop(peer, None)

    async def _serve_requests(self, peer: ID, ms: MessageStream) -> None:
        key = peer.to_bytes()
        while True:
            try:
                with trio.move_on_after(self._idle_timeout) as idle:
                    data = await ms.read()
            except FrameError as exc:
                self.stats.oversized += 1
                self._report(peer, "dht:oversized", OVERSIZED_WEIGHT, str(exc))
                await ms.reset()
                return
            except Exception:  # noqa: BLE001 — reset, EOF inside a message, connection gone
                await ms.reset()
                return
            if idle.cancelled_caught:
                self.stats.idle_closed += 1
                await ms.reset()
                return
            if data is None:  # the peer closed its side: done
                with trio.move_on_after(1), contextlib.suppress(Exception):
                    await ms.stream.close()
                return
            if not self._rate.allow(peer, trio.current_time()):
                self.stats.rate_limited += 1
                self._report(peer, "dht:rate", RATE_WEIGHT, "requests over the per-peer rate")
                await ms.reset()
                return
            try:
                msg = decode_message(data, self.limits)
            except CodecError as exc:
                self.stats.malformed += 1
                self._report(peer, "dht:malformed", MALFORMED_WEIGHT, str(exc))
                await ms.reset()
                return
            self.stats.inbound_requests += 1
            if await self._may_store(peer, msg.type):
                self._used(peer)  # as the requester counts it: a connection the DHT uses is in use at both ends
                reply = self._answer(key, msg)
                if isinstance(reply, SendResponse):
                    try:
                        with trio.fail_after(self.config.request_timeout):
                            await ms.write(encode_message(self._with_addrs(reply.message)))
                    except Exception:  # noqa: BLE001 — the peer stopped reading, or left
                        await ms.reset()
                        return
                    self.stats.responses += 1
                    continue
                if reply is None or reply.error is None:
                    continue  # ADD_PROVIDER: no answer, by the spec
                error = reply.error
            else:
                self.stats.refused_policy += 1  # refused like a quota: a failed request to the requester
                error = "refused by the policy"
            self.stats.refused += 1
            if error == INVALID_RECORD:
                # The validator refused it: a forged or malformed record (an
                # honest writer's stale one is "outdated", not this).
                self.stats.invalid_records += 1
                self._report(peer, "dht:invalid-record", INVALID_RECORD_WEIGHT, "a record the validator refused")
            if msg.type is MessageType.ADD_PROVIDER:
                continue  # unacknowledged anyway: a reset would only cost the peer's next message
            await ms.reset()  # as go does: the requester sees the refusal as a failed request
            return

    async def _may_store(self, peer: ID, kind: MessageType) -> bool:
        """The policy's ``store`` rules for a request that stores something here."""
        resource = _STORE_RESOURCES.get(kind)
        if resource is None or self._authorizer is None:
            return True
        return await self._authorizer.authorize(peer, "store", resource)

    def _with_addrs(self, msg: Message) -> Message:
        """Peers in an answer carry addresses: the table's, else the peerstore's
        (a peer that entered the table by answering a write has none of its
        own). A closer peer with no address at all is left out, as go does
        (the requester could not dial it)."""
        if all(p.addrs for p in msg.closer_peers) and all(p.addrs for p in msg.provider_peers):
            return msg
        cap = self.config.max_addrs

        def filled(peers: tuple[Peer, ...], keep_bare: bool) -> tuple[Peer, ...]:
            out = []
            for p in peers:
                if not p.addrs:
                    with contextlib.suppress(Exception):
                        p = dataclasses.replace(p, addrs=wire_addrs(self._dialer.known_addrs(ID(p.id)))[:cap])
                if p.addrs or keep_bare:
                    out.append(p)
            return tuple(out)

        return dataclasses.replace(msg, closer_peers=filled(msg.closer_peers, False),
                                   provider_peers=filled(msg.provider_peers, True))

    def _answer(self, peer: bytes, msg: Message) -> SendResponse | CloseRequest | None:
        rid = ("in", next(self._rids))
        if not self.running:  # stopping: refuse, nobody's fault
            return CloseRequest(peer, rid, "not running")
        self._replies[rid] = None
        try:
            self._feed(RequestReceived(peer, rid, msg))
        finally:
            reply = self._replies.pop(rid, None)
        return reply

    def _report(self, peer: ID, reason: str, weight: float, detail: str = "") -> None:
        self._log.warning((reason, str(peer)), "dht: %s from %s %s", reason, peer, detail)
        if self._offence is not None:
            self._offence(peer, reason, weight)

    # ------------------------------------------------------------------ connections

    async def _watch_connections(self, events: Any) -> None:
        async with trio.open_nursery() as nursery:
            async for ev in events:
                if ev.connected:
                    if ev.peer_id in self._assume_servers:
                        self.stats.assumed_servers += 1
                        self._feed(PeerConnected(ev.peer_id.to_bytes(),
                                                 wire_addrs(self._dialer.known_addrs(ev.peer_id)), True))
                    nursery.start_soon(self._identified, ev.peer_id)
                else:
                    self._feed(PeerDisconnected(ev.peer_id.to_bytes()))
                    sender = self._senders.get(ev.peer_id)
                    if sender is not None and sender.idle:
                        del self._senders[ev.peer_id]
                        stream = sender.drop()
                        if stream is not None:
                            nursery.start_soon(reset_quietly, stream)

    async def _identified(self, peer: ID) -> None:
        """Tell the core about a new connection once identify says what the peer speaks.

        Polls the peerstore (py-libp2p signals nothing when identify is done),
        quickly at first, then backing off, for up to ``IDENTIFY_WAIT``: on a
        loaded node identify can take seconds, and a server taken for a
        client would stay out of the table until it reconnects. py-libp2p
        tries identify once per connection and gives up silently under load,
        so when the peerstore still has nothing ``IDENTIFY_ASK_AFTER`` after
        the connection (or after our last try), we run identify ourselves.
        """
        if peer in self._identifying:
            return
        self._identifying.add(peer)
        try:
            await self._wait_identified(peer)
        finally:
            self._identifying.discard(peer)

    async def _wait_identified(self, peer: ID) -> None:
        protocols: list[str] = []
        delay = 0.01
        now = trio.current_time()
        deadline, ask_at = now + IDENTIFY_WAIT, now + IDENTIFY_ASK_AFTER
        while self._dialer.is_connected(peer):
            protocols = self._protocols_of(peer)
            now = trio.current_time()
            if protocols or now >= deadline:
                break
            if self._identify is not None and now >= ask_at:
                protocols = await self._ask_identify(peer, min(IDENTIFY_ASK_TIMEOUT, deadline - now))
                if protocols:
                    break
                ask_at = trio.current_time() + IDENTIFY_ASK_AFTER
                continue
            await trio.sleep(max(0.0, min(delay, ask_at - now, deadline - now)))
            delay = min(delay * 1.5, 0.5)
        if not self._dialer.is_connected(peer):
            return  # gone already (PeerDisconnected was fed)
        if not protocols and peer in self._assume_servers:
            return  # identify never answered: keep the assumption (it leaves if its requests fail)
        is_server = any(p in protocols for p in self.protocols)
        addrs = wire_addrs(self._dialer.known_addrs(peer))
        self._feed(PeerConnected(peer.to_bytes(), addrs, is_server))

    async def _refill(self) -> None:
        """Top the table up from live connections when evictions thinned it.

        The core evicts a peer after ``max_failures`` failed requests; on a
        starved CPU answers time out although the peer is alive and still
        connected, and nothing would bring it back (its connection is not
        new). As go-libp2p-kad-dht's fixLowPeers does, connected DHT servers
        missing from a table under k are offered again, at most every
        ``REFILL_GAP`` seconds, and every ``REFILL_INTERVAL`` in any case.
        Connected peers whose protocols are still unknown (every identify
        attempt failed while the process was starved) get a new round of
        identify attempts: otherwise a node whose only connections are its
        bootstrap peers would keep an empty table for as long as they last.
        """
        while True:
            with trio.move_on_after(REFILL_INTERVAL):
                await self._table_low.wait()
            self._table_low = trio.Event()
            core = self.core
            if core is not None and len(core.table) < self.config.k:
                for peer in list(self._dialer.peers()):
                    key = peer.to_bytes()
                    if key in core.table or key == core.local_peer:
                        continue
                    protocols = self._protocols_of(peer)
                    if any(p in protocols for p in self.protocols):
                        self.stats.refilled += 1
                        self._feed(PeerConnected(key, wire_addrs(self._dialer.known_addrs(peer)), True))
                    elif not protocols and peer not in self._identifying and self._nursery is not None:
                        self.stats.reidentified += 1
                        self._nursery.start_soon(self._identified, peer)
            await trio.sleep(REFILL_GAP)

    async def _ask_identify(self, peer: ID, timeout: float) -> list[str]:
        """Run identify with ``peer`` ourselves; its protocols, [] on failure."""
        assert self._identify is not None
        self.stats.identify_asked += 1
        try:
            with trio.fail_after(timeout):
                return list(await self._identify(peer, timeout))
        except Exception as exc:  # noqa: BLE001 — dial, negotiation, deadline, the peer's garbage
            self.stats.identify_failed += 1
            log.debug("identify of %s failed: %r", peer, exc)
            return []

    def _protocols_of(self, peer: ID) -> list[str]:
        try:
            return list(self._host.get_peerstore().get_protocols(peer) or ())
        except Exception:  # noqa: BLE001 — the peerstore raises for peers it does not know
            return []

    # ------------------------------------------------------------------ views

    def is_connected(self, peer: ID) -> bool:
        return bool(self._dialer.is_connected(peer))

    def known_addrs(self, peer: ID) -> list[Multiaddr]:
        return list(self._dialer.known_addrs(peer))

    def table_peers(self) -> list[ID]:
        return [] if self.core is None else [ID(e.peer) for e in self.core.table.peers()]

    def table_size(self) -> int:
        return 0 if self.core is None else len(self.core.table)

    async def wait_for_table(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) until the routing table holds a peer."""
        with trio.move_on_after(timeout):
            while not self.table_size():
                await self.table_changed.wait()
        return bool(self.table_size())

    def stats_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.stats.as_dict(), **self.sender_stats.as_dict(),
                               "open_senders": len(self._senders)}
        core = self.core
        if core is not None:
            c = core.stats
            out.update({
                "served": dict(c.served),
                "refused_by_core": dict(c.refused),
                "malformed_answers": c.malformed,
                "unsolicited": c.unsolicited,
                "timeouts": c.timeouts,
                "queries_refused": c.queries_refused,
                "evictions": c.evictions,
                "queries_cancelled": c.cancelled,
                "slow_requests": c.slow,
                "slow_after_s": round(core.slow_after(), 3),  # learned unless dht.slow_after fixes it
                "reconnects": c.reconnects,
                "requests_by_purpose": dict(c.requests),
                "reconnected": c.reconnected,
                "pings_skipped": c.pings_skipped,
                "lost_peers": len(core.lost),
                "queries_running": core.query_count(),
                "requests_pending": core.pending_count(),
            })
        return out


def _why(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:200]
