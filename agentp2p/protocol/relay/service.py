"""Circuit relay v2 on a node: relay service, reservations, circuits both ways.

* **Relay service** (hop.py): with ``service = "on"``, or ``"auto"`` once
  AutoNAT finds the node public (the assembly wires the verdict to
  :meth:`RelayService.follow_reachability`).
* **Reservations**: on the configured ``relays`` always, and — with
  ``auto_relay`` once AutoNAT finds the node private — on connected peers
  that offer relay service, ``reservations`` of them. Each is refreshed
  before it expires and re-made (with back-off) when the relay's
  connection drops; the connection manager never trims a relay we hold a
  reservation on. The node's advertised addresses (records, the DHT,
  identify) gain ``/p2p/R/p2p-circuit`` for each.
* **Circuits to us**: a stop CONNECT from a relay we hold a reservation
  on is accepted and handed to the node's inbound path, like a socket.
* **Circuits from us**: the dialer hands ``/p2p-circuit`` addresses here
  when direct ones fail or there are none (:meth:`dial`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.contract import NodeContext
from agentp2p.errors import DialError
from agentp2p.network.addresses import is_private_ip
from agentp2p.network.interfaces import ip_of, is_loopback, is_wildcard

from .client import Granted, RelayError, accept_stop, open_circuit, reserve, split_circuit
from .codec import HOP_PROTOCOL, STOP_PROTOCOL
from .config import RelayConfig
from .hop import HopServer

log = logging.getLogger("agentp2p.relay")

__all__ = ["RelayService"]

#: How often the reservation keeper looks at its relays.
_KEEP_INTERVAL = 5.0
#: Back-off after a failed reservation: doubles from the first to the last.
_BACKOFF = (5.0, 300.0)
#: A reservation is renewed when this share of its life is left ...
_RENEW_AT = 0.25
#: ... but never more often than this (a relay granting a few seconds).
_MIN_RENEW = 30.0


@dataclass
class _Held:
    """A reservation we hold, timed on our own clock (the relay's expiry is
    its wall clock; ours may differ)."""

    granted: Granted
    until: float  # ctx.now() when it lapses
    renew_at: float


def _private(addr: str) -> bool:
    ip = ip_of(addr)
    return ip is not None and is_private_ip(ip)


class RelayService:
    """See the module doc (name ``"relay"``)."""

    name = "relay"

    def __init__(self, config: RelayConfig | None = None) -> None:
        self.config = config or RelayConfig()
        self._ctx: NodeContext | None = None
        self.hop: HopServer | None = None
        self.serving = False
        self._private = False
        self.granted: dict[ID, _Held] = {}
        #: Peers we reached through a relay, and which relay carries them.
        self._via: dict[ID, ID] = {}
        self._inbound = 0  # circuits to us open now
        #: Our public addresses as AutoNAT confirmed them (what a relay advertises).
        self._public_addrs: list[str] = []
        self._static: dict[ID, Multiaddr] = {}
        self._retry_at: dict[ID, float] = {}
        self._failures: Counter[ID] = Counter()
        self._wake = trio.Event()
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------ wiring
    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self.hop = HopServer(ctx, self.config, self._relay_addrs)
        if self.config.accept_circuits:
            ctx.set_stream_handler(STOP_PROTOCOL, self._on_stop)
        if self.config.service == "on":
            self._serve(True)
        from agentp2p.network.addresses import parse_peer_addr

        for text in self.config.relays:
            info = parse_peer_addr(text)
            if info.peer_id != ctx.peer_id:
                self._static[info.peer_id] = Multiaddr(text)

    def follow_reachability(self, public: bool, private: bool, addrs: list[str] = ()) -> None:  # type: ignore[assignment]
        """AutoNAT's verdict: serve as a relay when public ("auto"); look for
        relays when private (``auto_relay``). ``addrs``: where AutoNAT's
        servers reached us (what our reservations tell clients)."""
        self._public_addrs = list(addrs) if public else []
        if self.config.service == "auto":
            self._serve(public)
        self._private = private
        self._wake.set()

    def _serve(self, on: bool) -> None:
        ctx = self._ctx
        if ctx is None or on == self.serving or self.hop is None:
            return
        self.serving = on
        if on:
            ctx.set_stream_handler(HOP_PROTOCOL, self.hop.handle)
        else:
            ctx.remove_stream_handler(HOP_PROTOCOL)
        log.info("relay service %s", "on" if on else "off")
        # Peers pick relays by what identify says we serve: tell them now.
        ctx.push_identify()

    def _relay_addrs(self) -> list[str]:
        """Where clients can reach this relay: AutoNAT-confirmed addresses
        first, then listen addresses that are not wildcard binds. A client
        far away cannot dial a private one (a wildcard bind is listed as each
        interface's address, loopback and LAN included), so: none while a
        public address is known; loopback only when there is nothing else,
        as on a devnet bound to 127.0.0.1."""
        ctx = self._ctx
        assert ctx is not None
        out = list(self._public_addrs)
        public = bool(out)
        listen = [str(a) for a in ctx.listen_addrs()]
        listen = [t for t in listen if "p2p-circuit" not in t and not is_wildcard(t)]
        only_loopback = all(is_loopback(t) for t in listen)
        for text in listen:
            if text in out or (public and _private(text)) or (is_loopback(text) and not only_loopback):
                continue
            out.append(text)
        return out

    # ------------------------------------------------------------ public
    def circuit_addrs(self) -> list[Multiaddr]:
        """Where peers can reach us through our relays (``/…/p2p/R/p2p-circuit``)."""
        now = self._ctx.now() if self._ctx is not None else 0.0
        out: list[Multiaddr] = []
        for relay, held in self.granted.items():
            if held.until <= now:
                continue
            bases = [a for a in held.granted.addrs if not is_wildcard(a)]
            if not bases and relay in self._static:
                bases = [str(self._static[relay])]
            for base in bases:
                with contextlib.suppress(Exception):
                    out.append(Multiaddr(f"{base}/p2p-circuit"))
        return out

    def protected_peers(self) -> list[ID]:
        """Connections the connection manager must keep: relays we hold a
        reservation on (our reachability), relays carrying our circuits to
        others, and — on a relay — the peers it holds reservations and
        circuits for (a circuit's stream is opened once and then busy for
        minutes, which "recently opened a stream" does not see)."""
        ctx = self._ctx
        out = list(self.granted)
        for peer, relay in list(self._via.items()):
            if ctx is not None and not ctx.dialer.is_connected(peer):
                del self._via[peer]
            elif relay not in out:
                out.append(relay)
        if self.hop is not None:
            out += [p for p in self.hop.books.peers() if p not in out]  # type: ignore[misc]
        return out

    async def dial(self, peer: ID, addrs: list[Multiaddr], timeout: float) -> None:
        """Connect to ``peer`` through the first of its circuit ``addrs`` that works."""
        ctx = self._ctx
        assert ctx is not None
        errors = []
        for addr in addrs:
            parts = split_circuit(addr)
            if parts is None:
                continue
            relay_addr, relay, target = parts
            if target is not None and target != peer:
                continue
            if relay == ctx.peer_id or relay == peer:
                continue
            self.counters["dials"] += 1
            try:
                with trio.fail_after(timeout):
                    # No wait for the relay's acceptance: the circuit stream's
                    # negotiation meets a refusal anyway, a round trip sooner.
                    await ctx.dialer.connect(relay, [relay_addr], lookup=False, timeout=timeout, confirm=False)
                    stream = await open_circuit(ctx.dialer, relay, peer, timeout)
                    try:
                        await ctx.adopt_outbound(stream, peer, Multiaddr(f"{relay_addr}/p2p-circuit/p2p/{peer}"))
                    except BaseException:
                        # Cancelled or failed mid-handshake: free the relay's slot now.
                        with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
                            await stream.reset()
                        raise
                self._via[peer] = relay
                self.counters["dials_ok"] += 1
                return
            except (Exception, trio.TooSlowError) as exc:  # noqa: BLE001 — try the next relay
                self.counters["dials_failed"] += 1
                errors.append(f"via {relay}: {exc}")
        raise DialError(f"no relay reached {peer}: " + ("; ".join(errors) or "no usable circuit address"))

    def stats(self) -> dict[str, Any]:
        hop = self.hop
        return {
            "service": self.serving,
            "reservations": {str(r): {"expires_in": max(0, int(h.until - (self._ctx.now() if self._ctx else 0))),
                                      "addrs": list(h.granted.addrs)}
                             for r, h in self.granted.items()},
            "circuit_addrs": [str(a) for a in self.circuit_addrs()],
            "client": dict(self.counters),
            "relay": {**dict(hop.stats), **{f"books_{k}": v for k, v in hop.books.stats.items()},
                      "reservations_held": hop.books.reservations, "circuits_open": hop.books.circuits,
                      "bytes_relayed": hop.bytes_relayed} if hop is not None else {},
        }

    # ------------------------------------------------------------ running
    async def run(self, ctx: NodeContext) -> None:
        events = ctx.events.subscribe()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, events)
            while True:
                await self._keep(ctx)
                self._wake = trio.Event()
                with trio.move_on_after(_KEEP_INTERVAL):
                    await self._wake.wait()

    async def _watch(self, events: Any) -> None:
        async for event in events:
            if event.connected:
                continue
            if self.hop is not None:
                self.hop.books.disconnected(event.peer_id)
            if self.granted.pop(event.peer_id, None) is not None:
                log.info("relay %s disconnected: reservation lost", event.peer_id)
                self._wake.set()

    def _wanted(self, ctx: NodeContext) -> list[ID]:
        """The relays to hold reservations on, in order of preference."""
        want = list(self._static)
        if self._private and self.config.auto_relay:
            for peer in ctx.dialer.peers():
                # Only relays we reach directly: a reservation over a circuit
                # would die with that circuit (and relays refuse it anyway).
                if peer not in want and HOP_PROTOCOL in ctx.protocols_of(peer) and not ctx.dialer.is_relayed(peer):
                    want.append(peer)
        return want

    async def _keep(self, ctx: NodeContext) -> None:
        now = ctx.now()
        wanted = self._wanted(ctx)
        before = [str(a) for a in self.circuit_addrs()]
        # Drop reservations we no longer want (an auto relay once we turn
        # public) and those that lapsed without a renewal.
        for relay in [r for r, h in self.granted.items() if r not in wanted or h.until <= now]:
            del self.granted[relay]
        held = [r for r in wanted if r in self.granted]
        for relay in wanted:
            h = self.granted.get(relay)
            if h is not None and now < h.renew_at:
                continue
            if h is None and relay not in self._static and len(held) >= self.config.reservations:
                continue
            if self._retry_at.get(relay, -math.inf) > now:
                continue
            addrs = [self._static[relay]] if relay in self._static else []
            try:
                if addrs:
                    await ctx.dialer.connect(relay, addrs, lookup=False)
                granted = await reserve(ctx.dialer, relay, timeout=10.0)
            except (RelayError, DialError, Exception) as exc:  # noqa: BLE001
                self._failures[relay] += 1
                delay = min(_BACKOFF[1], _BACKOFF[0] * 2 ** (self._failures[relay] - 1))
                self._retry_at[relay] = now + delay
                self.counters["reservations_failed"] += 1
                log.info("reservation on relay %s failed (retry in %.0f s): %s", relay, delay, exc)
                continue
            self._failures.pop(relay, None)
            self._retry_at.pop(relay, None)
            if not ctx.dialer.is_connected(relay):
                continue  # lost while we asked: the next turn reserves again
            # The relay's expiry is its wall clock: turn it into a lifetime on ours.
            lifetime = max(0.0, granted.expire - time.time())
            now = ctx.now()
            if relay not in self.granted:
                held.append(relay)
                log.info("reserved a slot on relay %s (%s)", relay, ", ".join(granted.addrs) or "no addrs")
            self.granted[relay] = _Held(granted, now + lifetime, now + max(_MIN_RENEW, (1 - _RENEW_AT) * lifetime))
            self.counters["reservations"] += 1
        if [str(a) for a in self.circuit_addrs()] != before:
            ctx.push_identify()  # where we can be reached changed

    # ------------------------------------------------------------ circuits to us
    async def _on_stop(self, stream: Any) -> None:
        ctx = self._ctx
        assert ctx is not None
        relay: ID = stream.muxed_conn.peer_id
        # Only relays we reserved on may end circuits here: no one else can
        # make this node take connections through a third party.
        held = self.granted.get(relay)
        room = self._inbound < self.config.max_inbound_circuits
        initiator = await accept_stop(stream, self.config.connect_timeout, held is not None and room)
        if initiator is None:
            self.counters["circuits_refused" if room else "circuits_refused_full"] += 1
            return
        self.counters["circuits_accepted"] += 1
        base = next(iter(held.granted.addrs), f"/p2p/{relay}") if held is not None else f"/p2p/{relay}"
        self._inbound += 1
        try:
            await ctx.adopt_inbound(stream, Multiaddr(f"{base}/p2p-circuit/p2p/{initiator}"))
        finally:
            self._inbound -= 1
