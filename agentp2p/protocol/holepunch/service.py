"""DCUtR on a node: relayed connections become direct ones where NATs allow.

The adapter for core.py's two roles:

* **B** (a relayed connection reached us): once the peer is identified
  and says it speaks ``/libp2p/dcutr``, run an :class:`~.core.Initiator` —
  a reversal to the peer's public addresses, else up to three punches,
  each on a new stream (as go-libp2p does).
* **A** (we dialed through a relay): serve ``/libp2p/dcutr`` on relayed
  connections we opened, one round per stream (:class:`~.core.Receiver`).
  A new round from the same peer replaces the one still running (B has
  given up on it).

Our candidate addresses are the IPs our direct peers see us at (identify's
observed address, asked of up to three of them at once, most common
first, one address family; cached and refreshed in the background) with
the port of a socket bound for the punch (network/punch.py says why not
the listen port). When a direct connection is up, the relayed one is
closed after ``grace`` seconds.

Bounds — every dial makes us send SYNs to addresses a peer named, so
tokens are spent only right before one (token buckets: the figures are
averages over their period, with bursts of the same size): as B one
upgrade per peer per ``retry_after``; as A ``attempts`` rounds per peer
per ``retry_after``; ``max_rounds_per_minute`` dials in all; and
``max_concurrent`` upgrades at once (more are skipped, counted); at most
8 addresses a round, each dialed once (network/punch.py); messages at
most 4 KiB; every exchange has a deadline.
"""

from __future__ import annotations

import logging
import math
import socket
from collections import Counter
from typing import Any

import trio
from libp2p.peer.id import ID

from agentp2p.contract import NodeContext
from agentp2p.network.addresses import tcp_multiaddr
from agentp2p.network.framing import length_prefixed, read_message
from agentp2p.network.ratelimit import PeerRateLimiter
from agentp2p.network.streams import close_quietly

from .codec import CONNECT, MAX_MESSAGE_BYTES, PROTOCOL, SYNC, CodecError, connect, decode, punchable, sync
from .config import HolePunchConfig
from .core import Dial, Done, Initiator, Receiver, Reverse, SendConnect, SendSync

log = logging.getLogger("agentp2p.holepunch")

__all__ = ["HolePunchService"]

#: How long our observed IP is trusted before it is asked for again ...
_OBSERVED_TTL = 120.0
#: ... and how long "nobody told us" stands (a peer may connect any moment).
_UNOBSERVED_TTL = 10.0
#: Direct peers asked for our observed IP per refresh (the most common answer wins).
_OBSERVERS = 3
#: Upgrade durations kept for stats (the newest).
_KEEP_DURATIONS = 64
_ALL = "all"
#: How often B looks for the peer's DCUtR in the peerstore (identify signals
#: nothing; a dict lookup). Every poll interval is latency added to the punch.
_IDENTIFY_POLL = 0.02


class _Failed(Exception):
    """One exchange broke (the reason goes to the core)."""


class HolePunchService:
    """See the module doc (name ``"holepunch"``)."""

    name = "holepunch"

    def __init__(self, config: HolePunchConfig | None = None) -> None:
        cfg = self.config = config or HolePunchConfig()
        self._ctx: NodeContext | None = None
        self._nursery: trio.Nursery | None = None
        self._busy: set[ID] = set()  # B: upgrades started (waiting for the peer, or running)
        self._driving = 0  # B: upgrades past the wait, exchanging and dialing
        self._answering: dict[ID, trio.CancelScope] = {}  # A: the round running per peer
        self._upgrades = PeerRateLimiter(1 / cfg.retry_after, 1, max_peers=4096)
        self._answers = PeerRateLimiter(cfg.attempts / cfg.retry_after, cfg.attempts, max_peers=4096)
        self._rounds = PeerRateLimiter(cfg.max_rounds_per_minute / 60, cfg.max_rounds_per_minute, max_peers=1)
        self._observed: tuple[float, list[str]] = (-math.inf, [])
        self._observing: trio.Event | None = None
        self.counters: Counter[str] = Counter()
        #: Why the last upgrade we started ended without a direct connection.
        self.last_failure: str | None = None
        #: Seconds from the start of an upgrade to a direct connection (newest last).
        self.durations: list[float] = []

    # ------------------------------------------------------------ wiring
    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        if self.config.enabled:
            ctx.set_stream_handler(PROTOCOL, self._on_stream)

    def stats(self) -> dict[str, Any]:
        d = sorted(self.durations)
        return {
            "enabled": self.config.enabled,
            "in_progress": self._driving + len(self._answering),
            "observed_ips": self._observed[1],
            "last_failure": self.last_failure,
            **dict(self.counters),
            "direct_after_ms": {"count": len(d), "p50": round(d[len(d) // 2] * 1000, 1),
                                "max": round(d[-1] * 1000, 1)} if d else {"count": 0},
        }

    async def run(self, ctx: NodeContext) -> None:
        if not self.config.enabled:
            return
        events = ctx.events.subscribe()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async for event in events:
                if event.connected:
                    self._on_connected(ctx, event.peer_id)

    def _on_connected(self, ctx: NodeContext, peer: ID) -> None:
        nursery = self._nursery
        assert nursery is not None
        if ctx.direct.relayed_outbound(peer):
            # We may be asked to punch soon: have our addresses ready, so
            # the answer (and the round trip the peer measures) is quick.
            self._refresh_ips(ctx)
            return
        if not ctx.direct.relayed_inbound(peer) or peer in self._busy:
            return
        # Bounded by the relayed connections that reach us (max_inbound_circuits).
        self._busy.add(peer)
        nursery.start_soon(self._initiate, ctx, peer)

    def _spend(self, ctx: NodeContext, peer: ID, *, first: bool) -> bool:
        """B is about to make (or start a round that makes) a dial: the
        upgrade's per-peer token the first time, and one node-wide."""
        if first and not self._upgrades.allow(peer, ctx.now()):
            self.counters["skipped_recent"] += 1
            return False
        return self._budget(ctx)

    def _budget(self, ctx: NodeContext) -> bool:
        """We may send SYNs now (node-wide); counted when not."""
        if self._rounds.allow(_ALL, ctx.now()):
            return True
        self.counters["refused_budget"] += 1
        return False

    # ------------------------------------------------------------ our address
    def _refresh_ips(self, ctx: NodeContext) -> trio.Event | None:
        """Start asking for our observed IPs unless the cache is fresh or a
        question is in flight; the event to wait on (None: nothing to wait for)."""
        at, ips = self._observed
        if ctx.now() - at < (_OBSERVED_TTL if ips else _UNOBSERVED_TTL):
            return None
        if self._observing is None and self._nursery is not None:  # (None: before run started)
            self._observing = trio.Event()
            self._nursery.start_soon(self._observe, ctx, self._observing)
        return self._observing

    async def _our_ips(self, ctx: NodeContext) -> list[str]:
        """The IPs direct peers see us at (see the module doc). The question
        runs in the service's nursery: a round that is cancelled does not
        cancel it for the others waiting."""
        done = self._refresh_ips(ctx)
        if done is not None:
            await done.wait()
        elif self._nursery is None and ctx.now() - self._observed[0] >= _UNOBSERVED_TTL:
            await self._observe(ctx, trio.Event())
        return self._observed[1]

    async def _observe(self, ctx: NodeContext, done: trio.Event) -> None:
        votes: Counter[str] = Counter()

        async def ask(peer: ID) -> None:
            try:
                seen = await ctx.direct.observed_ip(peer, self.config.stream_timeout)
            except Exception as exc:  # noqa: BLE001 — the others may answer
                log.debug("observed address from %s: %r", peer, exc)
                return
            if seen is not None and punchable([tcp_multiaddr(seen, 1).to_bytes()],
                                              allow_private=self.config.allow_private):
                votes[seen] += 1

        try:
            direct = [p for p in ctx.dialer.peers() if ctx.direct.has_direct(p)][:_OBSERVERS]
            with trio.move_on_after(self.config.stream_timeout):
                async with trio.open_nursery() as nursery:
                    for peer in direct:
                        nursery.start_soon(ask, peer)
            # One family (IPv4 if anyone saw one: one punch socket), most common first.
            v4 = [ip for ip, _ in votes.most_common() if ":" not in ip]
            self._observed = (ctx.now(), v4 or [ip for ip, _ in votes.most_common()])
        finally:
            self._observing = None
            done.set()

    async def _offer(self, ctx: NodeContext, stream: Any) -> Any:
        """Bind a punch port and send CONNECT with our candidates (observed
        IPs, that port); the port, for the dial."""
        ips = await self._our_ips(ctx)
        if not ips:
            raise _Failed("we know no public address of ours (no direct peer told us one)")
        try:
            port = ctx.direct.port(ipv6=":" in ips[0])
        except OSError as exc:
            raise _Failed(f"no local port for the punch: {exc}") from None
        try:
            await stream.write(length_prefixed(connect([tcp_multiaddr(ip, port.port) for ip in ips])))
        except BaseException as exc:
            port.close()
            if isinstance(exc, Exception):
                raise _Failed(f"stream: {type(exc).__name__}: {exc}") from None
            raise
        return port

    async def _expect(self, stream: Any, kind: int) -> Any:
        try:
            with trio.fail_after(self.config.stream_timeout):
                msg = decode(await read_message(stream, MAX_MESSAGE_BYTES))
        except trio.TooSlowError:
            raise _Failed(f"no answer within {self.config.stream_timeout:g}s") from None
        except CodecError as exc:
            raise _Failed(f"bad message: {exc}") from None
        except Exception as exc:  # noqa: BLE001 — the stream died
            raise _Failed(f"stream: {type(exc).__name__}: {exc}") from None
        if msg.type != kind:
            raise _Failed(f"expected {'CONNECT' if kind == CONNECT else 'SYNC'}, got type {msg.type}")
        return msg

    def _addrs(self, raw: list[bytes], port: Any = None) -> list[tuple[str, int]]:
        """The peer's addresses worth a punch, of our punch socket's family."""
        out = punchable(raw, allow_private=self.config.allow_private)
        if port is not None:
            want_v6 = port.family == socket.AF_INET6
            out = [a for a in out if (":" in a[0]) == want_v6]
        return out

    # ------------------------------------------------------------ B: the initiator
    async def _initiate(self, ctx: NodeContext, peer: ID) -> None:
        cfg = self.config
        started = ctx.now()
        self.counters["upgrades"] += 1
        try:
            if not await self._speaks_dcutr(ctx, peer):
                self.counters["peer_without_dcutr"] += 1
                return
            if self._driving >= cfg.max_concurrent:
                self.counters["skipped_busy"] += 1
                return
            core = Initiator(attempts=cfg.attempts)
            public = self._addrs([a.to_bytes() for a in ctx.dialer.known_addrs(peer) if "/p2p-circuit" not in str(a)])
            self._driving += 1
            try:
                done = await self._drive(ctx, peer, core, core.start(ctx.now(), public))
            finally:
                self._driving -= 1
            if done.how == "already_direct":
                self.counters["already_direct"] += 1  # not ours: no duration
                await ctx.direct.retire_relayed(peer, cfg.grace)
            elif done.direct:
                # The bound is for failures: after a success the peer may be
                # upgraded again at once (its direct connection may drop).
                self._upgrades.forget(peer)
                self.counters[f"direct_by_{done.how}"] += 1
                self._record(ctx.now() - started)
                log.info("direct connection to %s by %s (%.0f ms)", peer, done.how, (ctx.now() - started) * 1000)
                await ctx.direct.retire_relayed(peer, cfg.grace)
            else:
                self.counters["failed"] += 1
                self.last_failure = done.how
                log.info("no direct connection to %s (staying relayed): %s", peer, done.how)
        finally:
            self._busy.discard(peer)

    async def _speaks_dcutr(self, ctx: NodeContext, peer: ID) -> bool:
        """Wait (bounded by ``stream_timeout``) for identify to say ``peer``
        serves DCUtR: go-libp2p mounts it only once it knows a public address
        of its own, and tells us by identify push, maybe after we connected."""
        with trio.move_on_after(self.config.stream_timeout):
            while PROTOCOL not in ctx.protocols_of(peer):
                if not ctx.dialer.is_connected(peer):
                    return False
                await trio.sleep(_IDENTIFY_POLL)
        return PROTOCOL in ctx.protocols_of(peer)

    async def _drive(self, ctx: NodeContext, peer: ID, core: Initiator, actions: list[Any]) -> Done:
        cfg = self.config
        stream = port = None
        spent = False  # the per-peer token of this upgrade
        try:
            while True:
                action = actions.pop(0)
                if isinstance(action, Done):
                    return action
                if ctx.direct.has_direct(peer):
                    # Direct already (the peer dialed us, or an earlier round's
                    # SYN landed late): nothing left to punch.
                    return Done(True, "already_direct", core.tried)
                if isinstance(action, Reverse):
                    if not self._spend(ctx, peer, first=not spent):
                        return Done(False, "dialed this peer, or this many peers, too recently")
                    spent = True
                    ok = False
                    try:
                        await ctx.direct.dial_fresh(peer, list(action.addrs), cfg.reversal_timeout)
                        ok = True
                    except Exception as exc:  # noqa: BLE001
                        log.debug("reversal to %s failed: %s", peer, exc)
                    self.counters["reversals_ok" if ok else "reversals_failed"] += 1
                    actions = core.reversed(ctx.now(), ok)
                elif isinstance(action, SendConnect):
                    if stream is not None:
                        await close_quietly(stream)
                        stream = None
                    if port is not None:
                        port.close()
                        port = None
                    if not await self._our_ips(ctx):
                        actions = core.failed("we know no public address of ours (no direct peer told us one)")
                        continue
                    # This round ends in a dial: pay for it now, before the peer dials too.
                    if not self._spend(ctx, peer, first=not spent):
                        return Done(False, "dialed this peer, or this many peers, too recently")
                    spent = True
                    try:
                        stream = await ctx.dialer.open_stream(peer, [PROTOCOL], dial=False, lookup=False,
                                                              timeout=cfg.stream_timeout)
                        port = await self._offer(ctx, stream)
                        core.connect_sent(ctx.now())
                        msg = await self._expect(stream, CONNECT)
                    except _Failed as exc:
                        actions = core.failed(str(exc))
                        continue
                    except Exception as exc:  # noqa: BLE001 — the stream did not open
                        actions = core.failed(f"{type(exc).__name__}: {exc}")
                        continue
                    self.counters["attempts"] += 1
                    actions = core.connect_received(ctx.now(), self._addrs(list(msg.ObsAddrs), port))
                elif isinstance(action, SendSync):
                    try:
                        await stream.write(length_prefixed(sync()))
                    except Exception as exc:  # noqa: BLE001
                        actions = core.failed(f"stream: {exc}")
                elif isinstance(action, Dial):
                    await trio.sleep_until(action.at)
                    ok = await self._punch(ctx, peer, port, action)
                    actions = core.punched(ctx.now(), ok)
        finally:
            if stream is not None:
                await close_quietly(stream)
            if port is not None:
                port.close()

    async def _punch(self, ctx: NodeContext, peer: ID, port: Any, action: Dial) -> bool:
        try:
            await ctx.direct.punch(peer, port, list(action.addrs), as_client=action.as_client,
                                   timeout=self.config.dial_timeout)
        except Exception as exc:  # noqa: BLE001 — the NATs did not let us through
            self.counters["punches_failed"] += 1
            log.debug("punch to %s failed: %s", peer, exc)
            return False
        self.counters["punches_ok"] += 1
        return True

    # ------------------------------------------------------------ A: the receiver
    async def _on_stream(self, stream: Any) -> None:
        ctx = self._ctx
        assert ctx is not None
        peer: ID = stream.muxed_conn.peer_id
        # Only over a relayed connection we opened (the peer is B), and bounded.
        if not ctx.direct.relayed_outbound(peer) or ctx.direct.has_direct(peer):
            self.counters["refused_not_relayed"] += 1
            await close_quietly(stream, reset=True)
            return
        previous = self._answering.get(peer)
        if previous is None and len(self._answering) >= self.config.max_concurrent:
            self.counters["refused_busy"] += 1
            await close_quietly(stream, reset=True)
            return
        if not self._answers.allow(peer, ctx.now()):
            self.counters["refused_recent"] += 1
            await close_quietly(stream, reset=True)
            return
        if previous is not None:
            previous.cancel()  # B moved on to its next round: so do we
        with trio.CancelScope() as scope:
            self._answering[peer] = scope
            try:
                await self._answer(ctx, peer, stream)
            finally:
                if self._answering.get(peer) is scope:
                    del self._answering[peer]
        if scope.cancelled_caught:
            await close_quietly(stream, reset=True)

    async def _answer(self, ctx: NodeContext, peer: ID, stream: Any) -> None:
        started = ctx.now()
        port = None
        self.counters["answered"] += 1
        try:
            core = Receiver()
            try:
                msg = await self._expect(stream, CONNECT)
                first = core.connect_received(ctx.now(), punchable(list(msg.ObsAddrs),
                                                                   allow_private=self.config.allow_private))
                if isinstance(first[0], Done):
                    raise _Failed(first[0].how)
                port = await self._offer(ctx, stream)
                theirs = self._addrs(list(msg.ObsAddrs), port)  # of our socket's family
                if not theirs:
                    raise _Failed("the peer gave no address of our punch socket's family")
                await self._expect(stream, SYNC)
                if not self._budget(ctx):
                    raise _Failed("too many punches on this node this minute")
            except _Failed as exc:
                self.counters["answer_failed"] += 1
                log.debug("DCUtR from %s: %s", peer, exc)
                await close_quietly(stream, reset=True)
                return
            (dial,) = core.sync_received(ctx.now())
            assert isinstance(dial, Dial)
            await close_quietly(stream)
            dial = Dial(tuple(theirs), dial.at, dial.as_client)
            if await self._punch(ctx, peer, port, dial):
                self._record(ctx.now() - started)
                log.info("direct connection to %s by punch (answering)", peer)
                await ctx.direct.retire_relayed(peer, self.config.grace)
        finally:
            if port is not None:
                port.close()

    def _record(self, seconds: float) -> None:
        self.durations.append(seconds)
        del self.durations[:-_KEEP_DURATIONS]

