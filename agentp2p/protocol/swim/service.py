"""SwimService: SWIM membership run by a node (the libp2p/trio adapter).

The behaviour side of the adapter (rust-libp2p's NetworkBehaviour): it owns
one :class:`~.core.SwimCore` and drives it with trio; the bytes move in
:mod:`.transport`. Add it to a node with ``Node(config, services=[SwimService()])``.

Theory of operation
-------------------
* **One loop, no locks.** Every input reaches the core through
  :meth:`SwimService._step`: frames from the stream handlers, connection
  events, and the timer loop, which sleeps until ``core.next_deadline()`` or
  until another input may have armed an earlier timer. trio is cooperative,
  so ``core.handle`` is never re-entered. ``_step`` dispatches what the core
  returns at once and without awaiting: frames are queued on the transport
  (which drops, and counts, rather than block), events are fanned out to the
  listeners' bounded buffers (drops counted per listener).
* **Who is a candidate member.** Every peer the node connects to (bootstrap,
  DHT, inbound dials) is fed as ``MemberDiscovered`` with its peerstore
  addresses — at start for the peers already connected, then on each connect
  event. The core pings it; it joins when it answers (peers without SWIM never
  do). Members learn of everyone else by gossip, so the view covers the whole
  network, not just our connections; frames to members we are not connected
  to dial them with the address hints SWIM carries.
* **Identity.** The sender of a frame is the peer ID libp2p authenticated for
  the connection (Noise), never anything inside the frame. The core signs our
  own alive/left updates with the node's identity key and checks others'
  (crypto.py, signature.py), so relayed refutations and leaves are unforgeable.
* **Admission.** Gossip about strangers only makes them candidates the core
  pings (admission.py); they become members when they answer.
* **Flood control.** Each peer has an inbound frame budget (token bucket,
  ``inbound_rate``/``inbound_burst``); excess frames are dropped undecoded and
  counted (``stats()["transport"]["dropped_rate_limit"]``). Frames the core
  rejects (malformed, implausible, ahead, unsigned, forged) are counted in
  ``stats()["core"]``; excess frames and hostile rejections are logged at
  most once per peer per ``log_interval``.
* **Incarnation across restarts.** With an identity file, our incarnation is
  kept next to it (persist.py) and a restart begins one above it.
* **Leaving.** :meth:`leave` announces ``left`` and waits (bounded) until the
  core says it has had time to spread. If the node stops without it, ``run``'s
  cancellation path still announces ``left`` to a few members directly
  (shielded, at most ``stop_leave_timeout``), so a clean stop is reported as
  *left*, not *failed*; only a crash is a failure.
* **Time.** The core runs on ``trio.current_time()``.

Clock and period values come from :class:`~.config.SwimConfig` (fast defaults:
1 s period); see docs/swim.md for the detection-time / bandwidth trade-off.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from .config import SwimConfig
from .core import SwimCore
from .crypto import ed25519_signer, ed25519_verify
from .events import (
    Action,
    ConnectAhead,
    ConnectionClosed,
    ConnectionLost,
    ConnectionOpened,
    Input,
    Leave,
    LeaveComplete,
    MemberDiscovered,
    MemberEvent,
    Received,
    Send,
    Tick,
)
from .member import EventKind, Member, State
from .messages import Message, Ping
from .persist import SUFFIX, load_incarnation, restart_incarnation, save_incarnation
from .transport import FaultInjection, SwimTransport
from agentp2p.network.interfaces import is_loopback, is_wildcard
from agentp2p.throttled_log import ThrottledLog
from .wire import MAX_ADDR_BYTES, MAX_ADDRS, PROTOCOL_ID, encode

if TYPE_CHECKING:
    from agentp2p.contract import NodeContext

log = logging.getLogger("agentp2p.swim")

__all__ = ["FaultInjection", "MemberInfo", "MembershipEvent", "SwimService"]


#: Offence weight of each rejected SWIM frame or update.
SWIM_REJECTION_WEIGHT = 2.0

#: Members admitted without addresses whose addresses we look for in the
#: peerstore (identify fills it): at most this many at once, each for at most
#: ADDRLESS_WAIT seconds, looked up at most every ADDRLESS_EVERY seconds.
MAX_ADDRLESS = 256
ADDRLESS_WAIT = 30.0
ADDRLESS_EVERY = 1.0


def _dialable(addrs: Iterable[Multiaddr]) -> list[bytes]:
    """Addresses another member could dial: not a wildcard listener's, and
    no more (nor longer) than a member update may carry: a receiver rejects
    the whole frame past the wire's bounds, so one address too many from a
    node on many interfaces would silence its every frame. Loopback ones
    last (they serve only this machine), so a cut drops them first."""
    out = []
    for a in sorted(addrs, key=is_loopback):
        raw = a.to_bytes()
        if not is_wildcard(a) and 0 < len(raw) <= MAX_ADDR_BYTES:
            out.append(raw)
            if len(out) == MAX_ADDRS:
                break
    return out


def _rejections(core: SwimCore) -> int:
    st = core.stats
    # Only what an honest peer never sends: unsigned or "ahead" rumours can be
    # honest races (counted in stats, not logged).
    return st.malformed + st.implausible + st.forged


def _maddrs(raw: tuple[bytes, ...]) -> tuple[Multiaddr, ...]:
    out = []
    for a in raw:
        with contextlib.suppress(Exception):
            out.append(Multiaddr(a))
    return tuple(out)


@dataclass(frozen=True)
class MemberInfo:
    """One member as this node sees it."""

    peer_id: ID
    #: "alive", "suspect", "dead" or "left".
    state: str
    incarnation: int
    addrs: tuple[Multiaddr, ...]
    #: When it entered ``state`` (trio.current_time() clock).
    since: float

    @classmethod
    def of(cls, m: Member) -> MemberInfo:
        return cls(ID(m.peer_id), m.state.name.lower(), m.incarnation, _maddrs(m.addrs), m.since)


@dataclass(frozen=True)
class MembershipEvent:
    """A change in membership, as delivered by :meth:`SwimService.events`."""

    #: "joined", "suspect", "failed", "left" or "recovered".
    kind: str
    peer_id: ID
    incarnation: int
    #: State before the change ("alive", ...), None when the peer was unknown.
    previous: str | None
    addrs: tuple[Multiaddr, ...]
    #: trio.current_time() when this node learned it.
    at: float


class _Listener:
    __slots__ = ("send", "dropped")

    def __init__(self, send: trio.MemorySendChannel[MembershipEvent]) -> None:
        self.send = send
        self.dropped = 0


class SwimService:
    """SWIM + Lifeguard membership for a :class:`~agentp2p.node.Node` (name ``"swim"``)."""

    name = "swim"

    def __init__(
        self,
        config: SwimConfig | None = None,
        *,
        seed: int | None = None,
        dial_timeout: float | None = None,
        write_timeout: float | None = None,
        event_buffer: int = 1024,
        connection_event_buffer: int = 4096,
        leave_on_stop: bool = True,
        stop_leave_timeout: float = 1.0,
        inbound_rate: float | None = None,
        inbound_burst: float = 64,
        log_interval: float = 60.0,
        incarnation_file: Path | None = None,
    ) -> None:
        """``dial_timeout`` bounds opening a stream to a peer (dial included);
        default ``max(10 s, 10 periods)``. Long on purpose: opening a stream
        costs py-libp2p ~10 ms of CPU per side, so when a busy process opens
        hundreds at once (10 nodes starting: SWIM, DHT and pubsub streams to
        every peer) an open takes seconds; cancelling it wastes that work and
        retries make it worse (measured: with a 2 s limit, ~10 failed opens
        per node and false "failed" verdicts during start-up). Frames queue
        (bounded) behind a pending open; a dead peer's dial fails fast anyway.
        ``write_timeout`` (default ``max(10 s, 10 periods)`` too) bounds one
        write: a write that needs longer is stuck (the peer stopped
        reading), so its frame is dropped like a lost datagram and the stream
        reset. Long on purpose as well: in a starved process a write waits
        for the scheduler, not the peer, and a reset costs a new stream at
        both ends (measured: with one period, a 50-node devnet sharing its
        cores with a busy process timed out 1,304 writes in a 36-s merge, and
        opened 1,531 streams, 895 of them on connections already open).
        ``event_buffer`` bounds each listener's backlog;
        ``connection_event_buffer`` the node's connection events we have not
        read yet (past it some are lost, and we re-sync from the live
        connections).

        ``inbound_rate`` (frames/s, default ``max(50, 20 / period)``) and
        ``inbound_burst`` bound what one peer may send us; ``log_interval``
        throttles rejection logs per peer. ``incarnation_file`` keeps our
        incarnation across restarts (default: next to the node's identity
        file, none for an ephemeral identity)."""
        self._stop_announced = False
        self.config = config or SwimConfig()
        self._rng = random.Random(seed)
        period = self.config.probe_interval
        long = max(10.0, 10 * period)  # both bounds: see the docstring
        self._dial_timeout = dial_timeout if dial_timeout is not None else long
        self._write_timeout = write_timeout if write_timeout is not None else long
        self._inbound_rate = inbound_rate if inbound_rate is not None else max(50.0, 20.0 / period)
        self._inbound_burst = inbound_burst
        self._log_interval = log_interval
        self._reject_log = ThrottledLog(log, interval=log_interval, clock=trio.current_time)
        self._incarnation_file = incarnation_file
        self._persist_path: Path | None = None
        self._persisted = -1
        self._persist_wake = trio.Event()
        self.event_buffer = event_buffer
        self.leave_on_stop = leave_on_stop
        self.stop_leave_timeout = stop_leave_timeout
        self._node: NodeContext | None = None
        self._transport: SwimTransport | None = None
        self._core: SwimCore | None = None
        self._listeners: list[_Listener] = []
        self._wake = trio.Event()
        self._left = trio.Event()
        self._started = trio.Event()
        self._events_emitted = 0
        self._events_dropped_closed = 0
        self._connection_event_buffer = connection_event_buffer
        self._conn_gap = False
        self._connection_resyncs = 0
        self._frames_before_start = 0
        self._core_errors = 0
        self._pending_fault: FaultInjection | None = None
        self._sent: dict[str, int] = {}  # frames the core asked to send, by body kind
        #: Members the core admitted without an address (a frame's header
        #: carries none) -> until when we look for theirs (_fill_addrs).
        self._addrless: dict[bytes, float] = {}
        self._addrless_next = 0.0

    # ------------------------------------------------------------- NodeService

    def attach(self, ctx: NodeContext) -> None:
        self._node = ctx
        self._transport = SwimTransport(
            ctx.dialer,
            self._on_frame,
            dial_timeout=self._dial_timeout,
            write_timeout=self._write_timeout,
            inbound_rate=self._inbound_rate,
            inbound_burst=self._inbound_burst,
            log_interval=self._log_interval,
        )
        self._transport.fault = self._pending_fault
        ctx.set_stream_handler(PROTOCOL_ID, self._transport.handle_inbound)

    async def run(self, node: NodeContext, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Reports started once the core exists (its
        incarnation loaded from disk, which takes a thread hop), so that
        ``async with Node(...)`` returns with SWIM answering: frames that
        arrive before then are dropped (``frames_before_start``)."""
        transport = self._transport
        if transport is None or self._node is not node:
            raise RuntimeError("SwimService.run() before attach()")
        addrs = _dialable(node.listen_addrs())
        incarnation = await self._load_incarnation(node)
        self._core = SwimCore(
            node.peer_id.to_bytes(),
            addrs,
            rng=self._rng,
            now=trio.current_time(),
            config=self.config,
            incarnation=incarnation,
            sign=ed25519_signer(node.identity.private_key),
            verify=ed25519_verify,
        )
        self._conn_gap = False
        conn_events = node.events.subscribe(self._connection_event_buffer, on_gap=self._connection_gap)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(transport.run)
                if self._persist_path is not None:
                    nursery.start_soon(self._persist_loop)
                # Let the transport's nursery exist before the first Send.
                await trio.lowlevel.checkpoint()
                nursery.start_soon(self._feed_connections, node, conn_events)
                self._started.set()
                task_status.started()
                await self._timer_loop()
                nursery.cancel_scope.cancel()
        finally:
            with contextlib.suppress(Exception):
                conn_events.close()
            core = self._core
            if (
                self.leave_on_stop
                and not self._stop_announced
                and core is not None
                and not core.stopped
                and not self._left.is_set()
            ):
                with trio.CancelScope(shield=True), trio.move_on_after(self.stop_leave_timeout):
                    await self._announce_leave_now()
            if core is not None and self._persist_path is not None and core.incarnation != self._persisted:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await self._save_incarnation(core.incarnation)
            self._close_listeners()

    # ---------------------------------------------------------- persistence

    async def _load_incarnation(self, node: NodeContext) -> int:
        """Our starting incarnation: one above the stored one (and store it
        at once, so a crash right after start still counts)."""
        path = self._incarnation_file
        if path is None:
            path = node.state_path(SUFFIX)
        self._persist_path = path
        if path is None:
            return 0
        start = restart_incarnation(await trio.to_thread.run_sync(load_incarnation, path))
        await self._save_incarnation(start)
        return start

    async def _save_incarnation(self, value: int) -> None:
        path = self._persist_path
        assert path is not None
        try:
            await trio.to_thread.run_sync(save_incarnation, path, value)
        except OSError as exc:
            log.warning("swim: cannot store our incarnation in %s: %s", path, exc)
            return
        self._persisted = value

    async def _persist_loop(self) -> None:
        """Store our incarnation whenever it changed (coalesced: the latest value)."""
        core = self._core
        assert core is not None
        while True:
            await self._persist_wake.wait()
            self._persist_wake = trio.Event()
            if core.incarnation != self._persisted:
                await self._save_incarnation(core.incarnation)

    # --------------------------------------------------------------- driving

    def _step(self, event: Input) -> None:
        """Feed one input to the core and carry out what it returns (no awaits)."""
        core = self._core
        if core is None:
            return
        try:
            actions = core.handle(trio.current_time(), event)
        except Exception:  # a core bug must not take the node down; count and log it
            self._core_errors += 1
            log.exception("swim core failed on %r", type(event).__name__)
            return
        self._dispatch(actions)
        if self._addrless and isinstance(event, Tick) and trio.current_time() >= self._addrless_next:
            self._addrless_next = trio.current_time() + ADDRLESS_EVERY
            self._fill_addrs(core)
        self._wake.set()
        if self._persist_path is not None and core.incarnation != self._persisted:
            self._persist_wake.set()

    def _dispatch(self, actions: list[Action]) -> None:
        transport = self._transport
        assert transport is not None
        for a in actions:
            if isinstance(a, Send):
                kind = type(a.message.body).__name__
                self._sent[kind] = self._sent.get(kind, 0) + 1
                transport.send(a.to, encode(a.message), a.addrs, a.dial, f"{kind}:{a.why}" if a.why else kind)
            elif isinstance(a, ConnectAhead):
                transport.prepare(a.to, a.addrs)
            elif isinstance(a, MemberEvent):
                self._publish(a)
                if (not a.addrs and a.kind in (EventKind.JOINED, EventKind.RECOVERED)
                        and len(self._addrless) < MAX_ADDRLESS):  # fmt: skip
                    self._addrless[a.peer_id] = trio.current_time() + ADDRLESS_WAIT
            elif isinstance(a, LeaveComplete):
                self._left.set()

    def _fill_addrs(self, core: SwimCore) -> None:
        """Tell the core the addresses of members it admitted without any,
        once the peerstore holds some (identify's listen addresses; also
        any a dial to the member was given): it keeps them, passes them on
        in gossip and push/pull, and gives them to helpers it asks to ping
        the member (without, a helper not connected to it cannot).
        Wildcard addresses are left out (nobody can dial them)."""
        node = self._node
        if node is None:
            return
        now = trio.current_time()
        found: list[tuple[bytes, tuple[bytes, ...]]] = []
        for peer, until in list(self._addrless.items()):
            m = core.member(peer)
            if m is None or not m.live or m.addrs:
                del self._addrless[peer]  # gone, or it has some already
                continue
            addrs = tuple(_dialable(node.dialer.known_addrs(ID(peer))))
            if addrs or until <= now:
                del self._addrless[peer]
            if addrs:
                found.append((peer, addrs))
        for peer, addrs in found:
            self._step(MemberDiscovered(peer, addrs))

    def _on_frame(self, sender: bytes, frame: bytes) -> None:
        core = self._core
        if core is None:
            self._frames_before_start += 1
            return
        before = _rejections(core)
        self._step(Received(sender, frame))
        rejected = _rejections(core) - before
        if rejected and self._node is not None:
            # Lies an honest member never tells (forged, implausible, malformed):
            # offences, so the penalty box and trust see them. A suspicion we
            # refute is not one: honest members suspect each other under loss.
            self._node.offence(ID(sender), "swim:rejected", SWIM_REJECTION_WEIGHT * rejected)
        if rejected:
            self._reject_log.log(
                logging.WARNING,
                (sender, "rejected"),
                "swim: rejected %d frame(s)/update(s) from %s (malformed, implausible or forged; "
                "counts in stats()['core'])",
                rejected,
                ID(sender),
            )

    async def _timer_loop(self) -> None:
        core = self._core
        assert core is not None
        while True:
            deadline = core.next_deadline()
            if deadline is None and core.stopped:
                return
            wake = self._wake
            if deadline is None:
                await wake.wait()
            else:
                with trio.move_on_at(deadline):
                    await wake.wait()
            if wake is self._wake:
                self._wake = trio.Event()
            deadline = core.next_deadline()
            if deadline is not None and deadline <= trio.current_time():
                self._step(Tick())

    def _connection_gap(self) -> None:
        self._conn_gap = True  # called on the swarm's path: only a flag

    async def _feed_connections(self, node: NodeContext, events: trio.MemoryReceiveChannel[Any]) -> None:
        for peer in node.dialer.peers():
            self._discovered(node, peer)
        async for ev in events:
            if self._conn_gap:
                self._resync_connections(node, events)
                continue
            if ev.connected:
                self._discovered(node, ev.peer_id)
            elif ev.abrupt:
                self._step(ConnectionLost(ev.peer_id.to_bytes()))
            else:
                self._step(ConnectionClosed(ev.peer_id.to_bytes(), ev.by_peer))

    def _resync_connections(self, node: NodeContext, events: trio.MemoryReceiveChannel[Any]) -> None:
        """Our channel overflowed and lost connection events: what is queued
        is older than the live peer list, so drop it and tell the core the
        difference between that list and what it was told. Without it, a
        lost close leaves a member counted as connected and a lost open one
        out of the connected order (or, with probe_connected_min 0, a new
        peer unproposed). No await between the drain and the list, so the
        channel holds nothing older than the list; events the swarm has yet
        to emit may still describe changes the list shows (a duplicate open
        is harmless)."""
        self._conn_gap = False
        self._connection_resyncs += 1
        while True:
            try:
                events.receive_nowait()
            except trio.WouldBlock:
                break
        core = self._core
        if core is None:
            return
        live = {p.to_bytes(): p for p in node.dialer.peers()}
        held = set(core.connected_peers())
        for pid in sorted(held - live.keys()):  # sorted: the same hints on every run
            # How it ended is lost with the event: the cautious side, as for
            # a crash (it keeps its turns; its probe comes soon, budgeted).
            self._step(ConnectionLost(pid))
        for pid, peer in live.items():
            # Only what the core was not told: with the connected order, a
            # peer it does not hold; without, one that is no live member (a
            # member held dead gets the ping that carries our verdict, as its
            # reconnect would have). A live member re-announced costs nothing,
            # a DHT-only peer a ping.
            if pid in held:
                continue
            m = core.member(pid)
            if self.config.probe_connected_min or m is None or not m.live:
                self._discovered(node, peer)

    def _discovered(self, node: NodeContext, peer: ID) -> None:
        addrs = tuple(_dialable(node.dialer.known_addrs(peer)))
        self._step(MemberDiscovered(peer.to_bytes(), addrs))
        if self.config.probe_connected_min:
            self._step(ConnectionOpened(peer.to_bytes()))

    async def stopping(self, node: NodeContext) -> None:
        """The node is about to stop: say "left" while our streams still run.

        Called by the node before it cancels its services. Announcing from
        ``run``'s cancellation path alone came too late under load: the
        transport's writer tasks were already gone and a member could miss
        it and declare us failed instead."""
        core = self._core
        if self.leave_on_stop and core is not None and not core.stopped and not self._left.is_set():
            with trio.move_on_after(self.stop_leave_timeout):
                await self._announce_leave_now()
            self._stop_announced = True

    async def _announce_leave_now(self) -> None:
        """Tell every live member directly that we left, in parallel (over
        the connections we hold: a stopping node dials no one; gossip and
        the others' probes tell the rest), within the caller's time bound.
        Used when stopping without leave() — no time for gossip — and at the
        end of leave(), because gossip alone can miss a member of a small group:
        with N < 9 each update is piggybacked only 4 times per member, and in
        ~1 of 10 runs of the 6-node test one member never heard "left" and
        declared the node failed instead."""
        core, transport = self._core, self._transport
        assert core is not None and transport is not None
        frames: dict[bytes, tuple[bytes, tuple[bytes, ...]]] = {}
        me = core.local_id
        if not core.stopped:
            actions = core.handle(trio.current_time(), Leave())
            # Only frames that say we left spare a member its own: a probe or a
            # gossip frame that fell due just before Leave() does not.
            frames = {a.to: (encode(a.message), a.addrs) for a in actions if isinstance(a, Send)
                      and any(u.peer_id == me and u.state is State.LEFT for u in a.message.updates)}
        left = core.own_update(State.LEFT)
        for m in core.members():
            if m.live and m.peer_id not in frames:
                frames[m.peer_id] = (encode(Message(0, core.incarnation, Ping(m.peer_id), (left,))), m.addrs)
        async with trio.open_nursery() as nursery:
            for peer, (frame, addrs) in frames.items():
                nursery.start_soon(transport.send_now, peer, frame, addrs)

    # ------------------------------------------------------------------- API

    @property
    def started(self) -> bool:
        return self._core is not None

    async def wait_started(self) -> None:
        await self._started.wait()

    @property
    def incarnation(self) -> int:
        """Our own incarnation (grows each time we refute a suspicion)."""
        return self._core.incarnation if self._core is not None else 0

    @property
    def periods(self) -> int:
        """Protocol periods this node has started (its own protocol clock)."""
        return self._core.period if self._core is not None else 0

    def members(self) -> list[MemberInfo]:
        """Every member we know — alive, suspect, and dead/left ones until they
        are forgotten (check ``state``). Ourselves excluded."""
        if self._core is None:
            return []
        return [MemberInfo.of(m) for m in self._core.members()]

    def member_states(self) -> list[tuple[bytes, str]]:
        """(peer ID bytes, state) of every member ``members()`` lists, without
        building a MemberInfo each (an ID object and parsed addresses): cheap
        enough for the devnet to read 25 nodes' views several times a second
        while measuring them."""
        if self._core is None:
            return []
        return [(m.peer_id, m.state.name.lower()) for m in self._core.members()]

    def member(self, peer: ID) -> MemberInfo | None:
        m = self._core.member(peer.to_bytes()) if self._core is not None else None
        return MemberInfo.of(m) if m is not None else None

    def state_of(self, peer: ID) -> str | None:
        """"alive", "suspect", "dead", "left", or None for a peer we do not know."""
        m = self._core.member(peer.to_bytes()) if self._core is not None else None
        return m.state.name.lower() if m is not None else None

    def protected_peers(self) -> list[ID]:
        """The peers our probes need connected now or next, the member
        whose ring turns probe us and, while probing over connections, the
        members held longest (SwimCore.keep_connected): the connection
        manager keeps them (assembly.py)."""
        return [ID(p) for p in self._core.keep_connected()] if self._core is not None else []

    def is_alive(self, peer: ID) -> bool | None:
        """Liveness for other services: True for alive *or suspect* (a suspect
        has not been judged yet), False for dead or left, None when SWIM has no
        opinion (not a member, or the service has not started)."""
        m = self._core.member(peer.to_bytes()) if self._core is not None else None
        if m is None:
            return None
        return m.state is State.ALIVE or m.state is State.SUSPECT

    def alive_count(self) -> int:
        """Members alive or suspect, ourselves excluded."""
        return self._core.alive_count() if self._core is not None else 0

    @contextlib.asynccontextmanager
    async def events(self, buffer: int | None = None) -> AsyncIterator[trio.MemoryReceiveChannel[MembershipEvent]]:
        """Membership changes from now on: ``async with svc.events() as ev: async for e in ev``.

        Each listener has its own buffer (``buffer``, default ``event_buffer``);
        a listener that falls that far behind loses events (counted in
        ``stats()["events"]["dropped"]``) rather than slowing the protocol —
        ``members()`` is always the current truth to re-sync from. The channel
        ends when the service stops.
        """
        send, recv = trio.open_memory_channel[MembershipEvent](buffer or self.event_buffer)
        listener = _Listener(send)
        self._listeners.append(listener)
        try:
            async with recv:
                yield recv
        finally:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)
            self._events_dropped_closed += listener.dropped
            send.close()

    def _publish(self, a: MemberEvent) -> None:
        ev = MembershipEvent(
            a.kind.value,
            ID(a.peer_id),
            a.incarnation,
            a.previous.name.lower() if a.previous is not None else None,
            _maddrs(a.addrs),
            trio.current_time(),
        )
        self._events_emitted += 1
        log.debug("swim: %s %s (incarnation %d)", ev.kind, ev.peer_id, ev.incarnation)
        for listener in list(self._listeners):
            try:
                listener.send.send_nowait(ev)
            except trio.WouldBlock:
                listener.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                with contextlib.suppress(ValueError):
                    self._listeners.remove(listener)

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.send.close()
        self._listeners.clear()

    async def leave(self, timeout: float | None = None) -> bool:
        """Leave gracefully: announce ``left`` and keep answering for
        ``leave_periods`` periods so it spreads; then the service goes quiet
        (the node can stop). True if that completed within ``timeout``
        (default: the leave periods, stretched by our health score, plus 1 s)."""
        core = self._core
        if core is None:
            return False
        if not core.stopped:
            self._step(Leave())
        if timeout is None:
            cfg = self.config
            timeout = cfg.leave_periods * core.awareness.scale(cfg.probe_interval) + 1.0
        with trio.move_on_after(timeout):
            await self._left.wait()
        with trio.move_on_after(self.stop_leave_timeout):
            await self._announce_leave_now()
        return self._left.is_set()

    @property
    def left(self) -> bool:
        return self._left.is_set()

    # ---------------------------------------------------------- test hooks

    @property
    def fault(self) -> FaultInjection | None:
        """TEST HOOK (see :class:`FaultInjection`): partition or slow this node
        at the SWIM adapter. ``None`` = healthy."""
        return self._transport.fault if self._transport is not None else self._pending_fault

    @fault.setter
    def fault(self, value: FaultInjection | None) -> None:
        self._pending_fault = value
        if self._transport is not None:
            self._transport.fault = value

    # ---------------------------------------------------------------- stats

    @property
    def awareness(self) -> int:
        """Lifeguard's local health score now (0 healthy; it stretches our
        probes, verdicts and gossip): a level, not a counter."""
        return self._core.awareness.score if self._core is not None else 0

    def core_stats(self) -> dict[str, int]:
        """The core's counters alone (``stats()["core"]`` without the rest):
        cheap enough for the devnet to read from 50 nodes at once."""
        return asdict(self._core.stats) if self._core is not None else {}

    def transport_stats(self) -> dict[str, int]:
        """The transport's counters alone (``stats()["transport"]``): frames,
        stream opens and what was dropped, cheap to read like ``core_stats``;
        with ``dials_for_`` + kind: the opens that needed a new connection,
        by the kind of frame (or ConnectAhead) that asked for them; with
        ``failed_open: `` + reason: the failed opens by why (whether a
        connection was open as it began, the frame kind, the error)."""
        transport = self._transport
        if transport is None:
            return {}
        return {**asdict(transport.stats), **{f"dials_for_{k}": v for k, v in transport.dials_for.items()},
                **{f"failed_open: {k}": v for k, v in transport.failed_opens.items()}}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        core, transport = self._core, self._transport
        counts = {s.name.lower(): 0 for s in State}
        if core is not None:
            for m in core.members():
                counts[m.state.name.lower()] += 1
        return {
            "incarnation": self.incarnation,
            "awareness": self.awareness,
            "members": counts,
            "core": self.core_stats(),
            "transport": self.transport_stats(),
            "admission": core.admission_stats() if core is not None else {},
            "rejections_not_logged": self._reject_log.suppressed,
            "sent": dict(self._sent),
            "open_links": transport.open_links() if transport is not None else 0,
            "open_streams": transport.open_streams() if transport is not None else 0,
            "events": {
                "emitted": self._events_emitted,
                "listeners": len(self._listeners),
                "dropped": self._events_dropped_closed + sum(lst.dropped for lst in self._listeners),
            },
            "connection_resyncs": self._connection_resyncs,
            "frames_before_start": self._frames_before_start,
            "core_errors": self._core_errors,
        }

    def detection_bound(self, n: int) -> float:
        """Worst-case seconds from a crash until every member marks it failed,
        for ``n`` members and a healthy network (Lifeguard score 0): see
        docs/swim.md "Failure-detection bound"."""
        cfg = self.config
        first_probe = 2 * max(1, n - 1) * cfg.probe_interval
        if cfg.ring_probe_every:
            # The round-robin gets the periods the ring does not. (The ring's
            # predecessor probes within ring_probe_every periods, but only
            # while views agree: a worst case cannot count on it.)
            first_probe *= cfg.ring_probe_every / (cfg.ring_probe_every - 1)
        spread = math.ceil(math.log2(max(2, n))) * cfg.probe_interval
        return first_probe + cfg.suspicion_max(n) + 2 * spread
