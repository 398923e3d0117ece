"""AutoNAT v1 on a node: the adapter between the core and libp2p streams.

Client: asks connected peers that serve ``/libp2p/autonat/1.0.0`` to dial
it back (the core decides whom and when, and what the answers mean) and
tells listeners when the verdict changes — the assembly wires that to the
DHT's mode. Server: answers such requests, dialing back only the IP the
asker is observed at (dialpolicy.py), through a fresh connection that
proves the peer's key (:mod:`agentp2p.network.dialback`), within global
and per-peer rate limits and a cap on dial-backs at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.contract import NodeContext
from agentp2p.network.dialback import DialBackError
from agentp2p.network.framing import FrameError, length_prefixed, read_message
from agentp2p.network.ratelimit import PeerRateLimiter
from agentp2p.network.streams import close_quietly

from .codec import (
    MAX_MESSAGE_BYTES, PROTOCOL_ID, CodecError, Status, decode_request, decode_response, encode_request,
    encode_response,
)
from .config import AutoNATConfig
from .core import AddressesChanged, Answered, Ask, AutoNATCore, Outcome, ReachabilityChanged, Servers, Tick
from .dialpolicy import Refusal, dial_targets
from .verdict import Reachability

log = logging.getLogger("agentp2p.autonat")

__all__ = ["AutoNATService"]

#: How long a server waits for the asker's request once the stream is open.
_READ_TIMEOUT = 10.0
#: While no server is known, how often to look again (identify fills the
#: peerstore after a connection opens, and nothing signals when).
_LOOK_INTERVAL = 1.0

Listener = Callable[[Reachability, list[str]], None]


def observed_multiaddr(stream: Any) -> str | None:
    """The asker's address as our connection sees it, as a multiaddr string."""
    try:
        remote = stream.get_remote_address()
        ip = ipaddress.ip_address(str(remote[0]))
        port = int(remote[1])
    except Exception:  # noqa: BLE001 — no address (or an unusual transport): refuse
        return None
    return f"/ip{ip.version}/{ip}/tcp/{port}"


class AutoNATService:
    """AutoNAT client and server (name ``"autonat"``); see the module doc."""

    name = "autonat"

    def __init__(self, config: AutoNATConfig | None = None) -> None:
        self.config = config or AutoNATConfig()
        self.core = AutoNATCore(self.config)
        self._ctx: NodeContext | None = None
        self._listeners: list[Listener] = []
        # Answers from our questions, and None: "look at the servers again".
        # Holds at most one None and one answer per question in flight.
        self._inbox_send, self._inbox = trio.open_memory_channel[Answered | None](256)
        self._nudged = False
        self._now = 0.0
        cfg = self.config
        self._per_peer = PeerRateLimiter(rate=1.0 / cfg.peer_interval, burst=3)
        self._global = PeerRateLimiter(rate=cfg.max_dials_per_minute / 60.0, burst=cfg.max_dials_per_minute,
                                       max_peers=1)
        self._dial_slots = trio.Semaphore(cfg.max_concurrent_dials)
        self.served = {"ok": 0, "dial_error": 0, "refused": 0, "bad_request": 0}
        self._last_addrs: frozenset[str] = frozenset()

    # ------------------------------------------------------------ public
    @property
    def reachability(self) -> Reachability:
        return self.core.status

    def public_addrs(self) -> list[str]:
        """Where servers reached us (empty unless the verdict is public)."""
        return self.core.confirmed_addrs(self._now)

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(status, public_addrs)`` whenever the verdict changes."""
        self._listeners.append(listener)

    def stats(self) -> dict[str, Any]:
        return {
            "reachability": self.core.status.value,
            "public_addrs": self.public_addrs(),
            "servers_known": self.core.servers(),
            "quiet_rounds": self.core.quiet_rounds,
            "client": self.core.stats.as_dict(),
            "server": dict(self.served),
        }

    # ------------------------------------------------------------ lifecycle
    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        if self.config.server:
            ctx.set_stream_handler(PROTOCOL_ID, self._serve)

    async def run(self, ctx: NodeContext) -> None:
        if not self.config.client:
            return
        events = ctx.events.subscribe()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_connections, events)
            while True:
                self._now = ctx.now()
                self._feed(Servers(self._find_servers(ctx)))
                # Our own addresses only: circuits through relays come and go
                # without saying anything about whether we can be dialed.
                addrs = frozenset(str(a) for a in ctx.listen_addrs() if "p2p-circuit" not in str(a))
                if addrs != self._last_addrs:
                    if self._last_addrs:
                        self._feed(AddressesChanged())
                    self._last_addrs = addrs
                self._feed(Tick())
                deadline = self.core.next_deadline()
                if deadline is None or not self.core.servers():
                    deadline = min(deadline if deadline is not None else math.inf, self._now + _LOOK_INTERVAL)
                with trio.move_on_at(deadline):
                    item = await self._inbox.receive()
                    if item is None:
                        self._nudged = False
                    else:
                        self._now = ctx.now()
                        self._feed(item)

    async def _watch_connections(self, events: Any) -> None:
        """A connection opened or closed: look at the servers again."""
        async for _event in events:
            if not self._nudged:  # one pending nudge is enough: answers always fit beside it
                self._nudged = True
                self._inbox_send.send_nowait(None)

    def _find_servers(self, ctx: NodeContext) -> frozenset[object]:
        return frozenset(p for p in ctx.dialer.peers() if PROTOCOL_ID in ctx.protocols_of(p))

    def _feed(self, event: Any) -> None:
        for action in self.core.handle(self._now, event):
            if isinstance(action, Ask):
                self._nursery.start_soon(self._ask, action.peer)
            elif isinstance(action, ReachabilityChanged):
                log.info("reachability %s -> %s%s", action.old.value, action.new.value,
                         f" at {', '.join(action.addrs)}" if action.addrs else "")
                for listener in list(self._listeners):
                    try:
                        listener(action.new, list(action.addrs))
                    except Exception:  # noqa: BLE001 — a listener's bug must not stop AutoNAT
                        log.exception("reachability listener failed")

    # ------------------------------------------------------------ client
    async def _ask(self, peer: ID) -> None:
        ctx = self._ctx
        assert ctx is not None
        claimed = [a.to_bytes() for a in ctx.listen_addrs() if "p2p-circuit" not in str(a)]
        outcome, addr = Outcome.FAILED, None
        stream = None
        try:
            with trio.fail_after(self.config.request_timeout):
                stream = await ctx.dialer.open_stream(peer, [PROTOCOL_ID], dial=False, lookup=False,
                                                      timeout=self.config.request_timeout)
                await stream.write(length_prefixed(encode_request(ctx.peer_id.to_bytes(), claimed)))
                answer = decode_response(await read_message(stream, MAX_MESSAGE_BYTES))
            if answer.status is Status.OK:
                outcome = Outcome.REACHABLE
                with contextlib.suppress(Exception):
                    addr = str(Multiaddr(answer.addr)) if answer.addr else None
            elif answer.status is Status.E_DIAL_ERROR:
                outcome = Outcome.UNREACHABLE
            else:
                outcome = Outcome.REFUSED
                log.debug("autonat: %s refused: %s %s", peer, answer.status.name, answer.text)
        except (CodecError, FrameError) as exc:
            log.debug("autonat: %s answered garbage: %s", peer, exc)
            ctx.offence(peer, "autonat: unreadable answer", 1.0)
        except Exception as exc:  # noqa: BLE001 — timeouts, dial and stream errors: no answer
            log.debug("autonat: asking %s failed: %s", peer, exc)
        finally:
            if stream is not None:
                await close_quietly(stream)
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._inbox_send.send_nowait(Answered(peer, outcome, addr))

    # ------------------------------------------------------------ server
    async def _serve(self, stream: Any) -> None:
        ctx = self._ctx
        assert ctx is not None
        peer: ID = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(_READ_TIMEOUT):
                data = await read_message(stream, MAX_MESSAGE_BYTES)
            request = decode_request(data)
        except (CodecError, FrameError, trio.TooSlowError) as exc:
            self.served["bad_request"] += 1
            ctx.offence(peer, "autonat: bad request", 1.0)
            await self._respond(stream, Status.E_BAD_REQUEST, str(exc))
            return
        if request.peer_id and request.peer_id != peer.to_bytes():
            self.served["bad_request"] += 1
            await self._respond(stream, Status.E_BAD_REQUEST, "peer ID is not the connection's")
            return
        targets = dial_targets(request.addrs, observed_multiaddr(stream), peer.to_base58(),
                               allow_private=self.config.allow_private,
                               limit=self.config.max_addrs_per_request)
        if isinstance(targets, Refusal) or not targets:
            self.served["refused"] += 1
            reason = targets.reason if isinstance(targets, Refusal) else "no address to dial back"
            await self._respond(stream, Status.E_DIAL_REFUSED, reason)
            return
        now = ctx.now()
        if not self._per_peer.allow(peer, now) or not self._global.allow(None, now):
            self.served["refused"] += 1
            await self._respond(stream, Status.E_DIAL_REFUSED, "too many requests")
            return
        try:
            self._dial_slots.acquire_nowait()
        except trio.WouldBlock:
            self.served["refused"] += 1
            await self._respond(stream, Status.E_DIAL_REFUSED, "busy")
            return
        try:
            reached = await self._dial_back(peer, targets)
        finally:
            self._dial_slots.release()
        if reached is None:
            self.served["dial_error"] += 1
            await self._respond(stream, Status.E_DIAL_ERROR, "dial back failed")
        else:
            self.served["ok"] += 1
            await self._respond(stream, Status.OK, "", Multiaddr(reached).to_bytes())

    async def _dial_back(self, peer: ID, targets: list[str]) -> str | None:
        """The first of ``targets`` that answers as ``peer`` (all tried at once), or None."""
        ctx = self._ctx
        assert ctx is not None
        reached: list[str] = []

        async def attempt(addr: str, cancel: trio.CancelScope) -> None:
            try:
                await ctx.dial_back(peer, Multiaddr(addr), self.config.dial_timeout)
            except DialBackError as exc:
                log.debug("autonat: dial-back %s failed: %s", addr, exc)
                return
            reached.append(addr)
            cancel.cancel()

        with trio.move_on_after(self.config.dial_timeout) as scope:
            async with trio.open_nursery() as nursery:
                for addr in targets:
                    nursery.start_soon(attempt, addr, nursery.cancel_scope)
        del scope
        return reached[0] if reached else None

    async def _respond(self, stream: Any, status: Status, text: str, addr: bytes = b"") -> None:
        try:
            with trio.fail_after(5):
                await stream.write(length_prefixed(encode_response(status, text, addr)))
        except Exception:  # noqa: BLE001 — the asker went away
            await close_quietly(stream, reset=True)
            return
        await close_quietly(stream)
