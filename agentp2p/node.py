"""The agentp2p node: one object that owns the host and every service on it.

``async with Node(config) as node:`` starts everything in a fixed order and
stops everything on exit; all background work runs in the node's nursery, so
nothing outlives the block.

Start order matters with py-libp2p 0.8.1:

1. build the host (Noise only, guarded handlers), pubsub and the DHT, which
   register their stream handlers at assembly;
2. run the DHT service and our pub/sub router — *before* the host listens,
   because the DHT's handlers crash if a peer opens a stream before its
   service runs (and pub/sub must be ready before the services start);
3. listen, then start the maintenance tasks (bootstrap, loneliness watch);
   the DHT feeds its own table and refreshes it while it runs.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from multiaddr import Multiaddr

from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from agentp2p.assembly import assemble, peer_info
from agentp2p.config import NodeConfig
from agentp2p.contract import NodeService
from agentp2p.errors import DialError, ListenError, NotRunningError
from agentp2p.network.addresses import to_peer_id, with_peer_id
from agentp2p.network.closing import Closer
from agentp2p.network.interfaces import expand_wildcards, is_loopback
from agentp2p.network.events import is_inbound
from agentp2p.network.identify import read_to_eof
from agentp2p.network.identity import Identity
from agentp2p.network.listen import bind_error_reason
from agentp2p.network.penalties import BanInfo
from agentp2p.protocol.ping import ping
from agentp2p.protocol.pubsub import Message, Subscription, Validator
from agentp2p.security.certificates import Certificate, decode_certificate_text
from agentp2p.security.gater import ConnectionGater
from agentp2p.security.trust import Pin, write_private_file
from agentp2p.security.policy import Policy

if TYPE_CHECKING:
    from agentp2p.protocol.swim.service import MemberInfo, MembershipEvent, SwimService
    from agentp2p.application.records.model import AgentRecord
    from agentp2p.application.records.ranking import RankedAgent
    from agentp2p.application.records.service import RecordService
    from agentp2p.messaging.message import IncomingMessage
    from agentp2p.messaging.service import MessagingService

log = logging.getLogger("agentp2p.node")

__all__ = ["Node", "NodeService", "PeerIdentity", "Message", "Subscription"]

#: Seconds between saves of the trust file (and one at stop).
TRUST_SAVE_EVERY = 60.0


@dataclass(frozen=True)
class PeerIdentity:
    """What a peer says about itself over identify."""

    peer_id: ID
    agent_version: str
    protocol_version: str
    protocols: list[str]
    listen_addrs: list[str] = field(default_factory=list)


def _single_error(exc: BaseException) -> BaseException:
    """The one leaf of nested single-member exception groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _bind_failure_reason(addr: Multiaddr) -> str:
    """Why binding ``addr`` fails, found by trying it ourselves (diagnostic only)."""
    import socket

    try:
        host = addr.value_for_protocol("ip4")
        family = socket.AF_INET
    except Exception:
        host, family = addr.value_for_protocol("ip6"), socket.AF_INET6
    udp = "udp" in [p.name for p in addr.protocols()]
    port = int(addr.value_for_protocol("udp" if udp else "tcp"))
    try:
        with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
            if not udp:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return bind_error_reason(exc)
    return "the transport refused it"


class Node:
    """An agentp2p node. Use as ``async with Node(config) as node: ...``."""

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        identity: Identity | None = None,
        services: Sequence[NodeService] = (),
    ) -> None:
        self.config = (config or NodeConfig()).validate()
        self._started_once = False
        self._nursery: trio.Nursery | None = None
        # Everything is built in one place (agentp2p.assembly); the node owns
        # the parts, runs them, and is the public facade over them.
        parts = assemble(
            self.config, identity=identity, services=services, on_ban=self._on_ban, on_distrust=self._on_distrust
        )
        self.identity = parts.identity
        self._listen = parts.listen
        self.penalties = parts.penalties
        self.denylist = parts.denylist
        self.allowlist = parts.allowlist
        self.trust = parts.trust
        self._trust_path = parts.trust_path
        self._banned = parts.is_banned
        assert parts.authorizer is not None
        self.authorizer = parts.authorizer
        # The policy's connect rules for peers whose groups decide (and after a change).
        self.gater = ConnectionGater(self.authorizer, peers=self.peers, cut_off=self._cut_off)
        self.resources = parts.resources
        self.handler_failures = parts.handler_failures
        self.host = parts.host
        self.events = parts.events
        self.dialer = parts.dialer
        #: Takes out of the swarm's table connections whose close was cut short (network/closing.py).
        self.closer = Closer(self.host.get_network())
        self.pubsub = parts.pubsub
        self.dht = parts.dht
        self.bootstrapper = parts.bootstrapper
        self.connections = parts.connections
        self.context = parts.context
        self.context.facade = self
        self.services: dict[str, NodeService] = parts.services
        self._cm: contextlib.AbstractAsyncContextManager[None] | None = None
        self.started_at: float | None = None

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Node:
        if self._started_once:
            raise RuntimeError("a Node can be started only once")
        self._started_once = True
        self._cm = self._lifetime()
        try:
            await self._cm.__aenter__()
        except BaseException as exc:
            self._cm = None
            raise _single_error(exc) from None
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        cm = self._cm
        if cm is None:
            return None
        try:
            return await cm.__aexit__(*exc_info)
        except BaseException as exc:
            # py-libp2p's service nurseries wrap whatever passes through them
            # in ExceptionGroups; give the caller back the one real error.
            single = _single_error(exc)
            if single is exc_info[1]:
                raise single.with_traceback(single.__traceback__) from None
            raise single from None
        finally:
            self._nursery = None

    @contextlib.asynccontextmanager
    async def _lifetime(self) -> AsyncIterator[None]:
        """Everything the node runs, as properly nested blocks (see module doc).

        Our own tasks live in the innermost nursery so that stopping them
        (cancelling it) never cancels the library services' clean-up, which
        would replace the caller's exception with ``Cancelled``.
        """
        async with contextlib.AsyncExitStack() as stack:
            if self.config.identity_path is not None:
                # One running node per identity file (a second daemon on it
                # would be the same peer ID in two places).
                from agentp2p.network.identity_lock import identity_lock

                stack.enter_context(identity_lock(self.config.identity_path))
            await stack.enter_async_context(self.dht.running())
            await stack.enter_async_context(self.pubsub.running())
            await stack.enter_async_context(self._listening())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_loneliness, self.events.subscribe())
                nursery.start_soon(self._log_peer_events, self.events.subscribe())
                nursery.start_soon(self.gater.run, self.events.subscribe())
                if self.config.trust.enabled:
                    nursery.start_soon(self._tend_trust)
                nursery.start_soon(self.bootstrapper.run)
                nursery.start_soon(self.closer.run)
                if self.connections is not None and self.connections.active:
                    nursery.start_soon(self._manage_connections, self.events.subscribe())
                if self.config.mdns:
                    nursery.start_soon(self._run_mdns)
                # Services may use the node's API while they start.
                self._nursery = nursery
                self.context.nursery = nursery
                for service in self.services.values():
                    # Services that report readiness are awaited, so the
                    # node's API works as soon as ``async with`` returns.
                    if "task_status" in inspect.signature(service.run).parameters:
                        await nursery.start(service.run, self.context, name=f"service:{service.name}")
                    else:
                        nursery.start_soon(service.run, self.context, name=f"service:{service.name}")
                self._nursery = nursery
                self.started_at = time.monotonic()
                try:
                    yield
                finally:
                    # Services that want to say goodbye (SWIM's "left") do so
                    # while everything still runs; bounded, and shielded in
                    # case we are stopping because of a cancellation.
                    with trio.CancelScope(shield=True), trio.move_on_after(2):
                        for service in self.services.values():
                            stopping = getattr(service, "stopping", None)
                            if stopping is not None:
                                with contextlib.suppress(Exception):
                                    await stopping(self.context)
                    self._nursery = None
                    self.context.nursery = None
                    self._save_trust()
                    nursery.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def _listening(self) -> AsyncIterator[None]:
        async with self.host.run(self._listen):
            # py-libp2p logs a failed bind and carries on without the
            # listener; a node that silently listens nowhere is worse than
            # one that refuses to start.
            listeners = self.host.get_network().listeners
            for addr in self._listen:
                if str(addr) not in listeners:
                    raise ListenError(f"cannot listen on {addr}: {_bind_failure_reason(addr)}")
            try:
                yield
            finally:
                # py-libp2p's shutdown leaves peers' connections half-open
                # (they notice only when a write fails); close them so every
                # peer sees us leave at once.
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    # First stop taking connections: one that arrives now
                    # (the listener is open until host.run ends) would
                    # otherwise outlive us, half-open for its peer.
                    from agentp2p.network.inbound import inbound_gate

                    gate = inbound_gate(self.host)
                    if gate is not None:
                        gate.stop_accepting()
                    await self._close_all_connections()
                    if gate is not None:
                        await gate.close()  # whatever the swarm's table did not hold

    async def _close_all_connections(self) -> None:
        network = self.host.get_network()
        async with trio.open_nursery() as nursery:
            for peer_id in list(network.connections):
                nursery.start_soon(self._close_quietly, peer_id)

    async def _cut_off(self, peers: Iterable[ID]) -> None:
        """Close what is open to ``peers`` now, including connections dialed
        before a list changed; the gates refuse anything new."""
        async with trio.open_nursery() as nursery:
            for peer in peers:
                if self.dialer.is_connected(peer):
                    nursery.start_soon(self._close_quietly, peer)

    async def _close_quietly(self, peer_id: ID) -> None:
        with contextlib.suppress(Exception):
            await self._close_connections(peer_id)

    async def _close_connections(self, peer_id: ID) -> None:
        """Close the connections to ``peer_id`` open now, and only those.

        Not the library's ``Swarm.close_peer``: it awaits each close, then
        drops *every* connection of the peer from the swarm's table, including
        one the peer opened while we were closing (a js-libp2p peer redials
        within milliseconds). That connection stayed open, untracked: no
        ``peers``, no ping, no pub/sub. Each ``SwarmConn.close`` removes just
        itself from the table.
        """
        network = self.host.get_network()
        conns = list(network.get_connections(peer_id))

        async def close_one(conn: Any) -> None:
            try:
                network.cleanup_connection_health(peer_id, conn)
                await conn.close()
            except Exception as exc:  # noqa: BLE001 — the others still close
                log.debug("closing a connection to %s failed: %r", peer_id, exc)

        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(close_one, conn)

    # -- penalties ----------------------------------------------------------------

    def offence(self, peer: ID | None, reason: str, weight: float = 1.0) -> None:
        """Count misbehaviour by ``peer``; enough of it bans the peer."""
        self.context.offence(peer, reason, weight)

    def _on_ban(self, peer: Any, info: BanInfo) -> None:
        if self.trust.pinned(peer) is Pin.TRUSTED:
            return  # pinned by an operator: the penalty box does not cut it off
        log.warning("peer %s banned for %.0fs after %d offences (last: %s)", peer, info.remaining, info.offences, info.reason)
        if self._nursery is not None:
            self._nursery.start_soon(self._close_quietly, peer)

    def _on_distrust(self, peer: ID) -> None:
        info = self.trust.describe(peer)
        log.warning("peer %s cut off for %.0fs: trust %.1f below %.1f (%s)", peer, info["refused_for_s"],
                    self.trust.score(peer), self.config.trust.disconnect_below,
                    ", ".join(f"{r} x{n}" for r, n in list(info["reasons"].items())[:3]))
        if self._nursery is not None:
            self._nursery.start_soon(self._close_quietly, peer)

    def is_banned(self, peer: ID | str) -> bool:
        return self._banned(to_peer_id(peer))

    # -- trust (agentp2p.security.trust) ------------------------------------------------

    def trust_of(self, peer: ID | str) -> dict[str, Any]:
        """``peer``'s trust: score, level (normal, deprioritized, cut_off, trusted,
        banned), pin, reasons by count, seconds it is still refused."""
        return self.trust.describe(to_peer_id(peer))

    def trust_scores(self) -> list[dict[str, Any]]:
        """Every peer with a trust opinion (score not ~0, pinned or cut off), lowest first."""
        return self.trust.peers()

    async def pin(self, peer: ID | str, pin: str | None) -> dict[str, Any]:
        """Pin ``peer`` as ``"trusted"`` or ``"banned"`` (cut off now), or unpin it
        (None); kept across restarts. ValueError for another value."""
        pid = to_peer_id(peer)
        self.trust.pin(pid, pin)
        if pin is not None and Pin(pin) is Pin.BANNED:
            await self._cut_off([pid])
        elif pin is not None:
            self.penalties.unban(pid)
        await self._save_trust_async()
        return self.trust.describe(pid)

    def _save_trust(self) -> None:
        if self._trust_path is None:
            return
        try:
            self.trust.save(self._trust_path)
        except OSError as exc:
            log.warning("trust: cannot save %s: %s", self._trust_path, exc)

    async def _save_trust_async(self) -> None:
        """Serialised here (the book is the event loop's), written in a thread."""
        if self._trust_path is None:
            return
        data = self.trust.dump()
        try:
            await trio.to_thread.run_sync(write_private_file, self._trust_path, data)
        except OSError as exc:
            log.warning("trust: cannot save %s: %s", self._trust_path, exc)

    async def _tend_trust(self) -> None:
        """Every few seconds: the gossipsub router's view of a peer's own
        misbehaviour (P7: broken IWANT promises, GRAFT floods) into trust;
        trust into the router for deprioritised peers (P5, so meshes prefer
        others); and now and then the book to disk.

        Only P7 goes in: P6 is where a peer is (honest agents behind one NAT
        share an IP), and P5 is our own opinion, which must not feed itself.
        P5 is set only below ``deprioritize_below``: the mesh prunes any
        negative score, and a peer with one small offence is not deprioritised."""
        applied: dict[ID, float] = {}
        saved_at = trio.current_time()
        while True:
            tick = self.config.trust.upkeep_interval
            await trio.sleep(tick)
            pubsub = self.pubsub
            live = pubsub.router.pubsub_peers()
            for peer in live:
                p7 = pubsub.peer_behaviour_penalty(peer)
                if p7 < 0 and self.trust.record(peer, "gossipsub:behaviour", p7 / 100 * tick / 60):
                    self._on_distrust(peer)
                app = self.trust.score(peer) if self.trust.deprioritized(peer) else 0.0
                if applied.get(peer, 0.0) != app:
                    pubsub.set_app_score(peer, app)
                    applied[peer] = app
            if len(applied) > 2 * max(1, len(live)):
                keep = set(live)
                applied = {p: v for p, v in applied.items() if p in keep}
            if trio.current_time() - saved_at >= TRUST_SAVE_EVERY:
                saved_at = trio.current_time()
                await self._save_trust_async()

    # -- the deny list (agentp2p.network.denylist) ----------------------------------

    async def deny(self, *peers: ID | str) -> list[ID]:
        """Refuse ``peers`` until :meth:`allow`: no dial to them, no connection
        from them, and our open connections to them closed now. Returns the
        peers that were not denied already. Raises ``DenyListFull`` (a
        ``ValueError``) past ``DenyList.max_entries``."""
        targets = [to_peer_id(p) for p in peers]
        new = self.denylist.deny(targets)
        await self._cut_off(targets)
        return new  # type: ignore[return-value]

    def allow(self, *peers: ID | str) -> list[ID]:
        """Take ``peers`` off the deny list (none given: every peer); returns
        those that were on it. Nothing is redialed here: the services that
        want a peer (SWIM's reconnect pings, bootstrap, lookups) dial it as
        they would any other."""
        if not peers:
            return self.denylist.clear()  # type: ignore[return-value]
        return self.denylist.allow([to_peer_id(p) for p in peers])  # type: ignore[return-value]

    def denied(self) -> list[ID]:
        """Peers on the deny list now."""
        return self.denylist.peers()  # type: ignore[return-value]

    def is_denied(self, peer: ID | str) -> bool:
        return to_peer_id(peer) in self.denylist

    # -- the allow list (agentp2p.network.allowlist) --------------------------------

    def allowed(self) -> list[ID] | None:
        """The peers the allow list admits; None when it is off (``allow_only =
        false``: every peer not denied or banned may connect)."""
        return self.allowlist.peers() if self.allowlist.enabled else None  # type: ignore[return-value]

    def add_allowed(self, *peers: ID | str) -> list[ID]:
        """Admit ``peers`` (returns the new ones). Raises ``AllowListOff`` when
        the list is not in force and ``AllowListFull`` past its bound (both
        ``ValueError``)."""
        return self.allowlist.add([to_peer_id(p) for p in peers])  # type: ignore[return-value]

    async def remove_allowed(self, *peers: ID | str) -> list[ID]:
        """Stop admitting ``peers`` and close what is open to them now; returns
        those that were on the list."""
        gone = self.allowlist.remove([to_peer_id(p) for p in peers])
        await self._cut_off(gone)  # type: ignore[arg-type]
        return gone  # type: ignore[return-value]

    # -- authorization policy and certificates (agentp2p.security) -----------------

    def policy(self) -> Policy:
        """The authorization policy in force (docs/security.md)."""
        return self.authorizer.policy

    def set_policy(self, policy: Policy | Mapping[str, Any]) -> Policy:
        """Replace the policy, in force at once (``PolicyError``, a ``ConfigError``,
        if the document is wrong; the old one then stays). Until the node stops:
        keep lasting policies in the config."""
        new = policy if isinstance(policy, Policy) else Policy.from_dict(policy)
        self.authorizer.set_policy(new)
        return new

    def certificates(self) -> list[Certificate]:
        """The membership certificates this node presents (valid ones)."""
        return self.authorizer.book.own(self.authorizer.clock_ms())

    def add_certificate(self, certificate: bytes | str) -> Certificate:
        """Present ``certificate`` (bytes, or the base64 text ``agentp2p cert issue``
        writes) from now on; replaces ours for the same group and issuer.
        ``CertificateError`` (a ``ValueError``) if it is not valid or not ours."""
        raw = decode_certificate_text(certificate) if isinstance(certificate, str) else bytes(certificate)
        return self.authorizer.book.add_own(raw, self.authorizer.clock_ms())

    async def peer_groups(self, peer: ID | str, *, refresh: bool = False) -> dict[str, Any]:
        """What ``peer`` proved of its groups: its accepted and refused certificates
        and the policy's groups it is in now (fetched from the peer if not known
        or ``refresh``)."""
        self._require_running()
        pid = to_peer_id(peer)
        auth = self.authorizer
        if refresh:
            auth.book.forget(pid)
        await auth.resolve(pid, dial=True)
        known = auth.book.describe(pid) or {"certificates": [], "refused": [], "fetch_failed": auth.fetch is None}
        groups = auth.book.groups_of(pid, auth.policy, auth.clock_ms())
        return {"peer": str(pid), "groups": sorted(groups), **known}

    def _require_running(self) -> trio.Nursery:
        if self._nursery is None:
            raise NotRunningError("the node is not running; use `async with Node(...) as node:`")
        return self._nursery

    async def _watch_loneliness(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        """Re-bootstrap when the last connection closes or the table empties."""
        async for ev in events:
            if not ev.connected and (
                not self.host.get_network().connections or self.dht.routing_table_size == 0
            ):
                self.bootstrapper.wake()

    async def _manage_connections(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        """Every ``connections.interval``, and at once when an inbound
        connection is refused for lack of room: close the idle connections
        above the high-water mark (agentp2p/network/connection_manager.py says why)."""
        cm = self.connections
        assert cm is not None

        async def feed() -> None:
            async for ev in events:
                if ev.connected:
                    cm.connected(ev.peer_id, trio.current_time(), ev.inbound)
                else:
                    cm.disconnected(ev.peer_id)

        pressure = trio.Event()

        def full() -> None:
            # ConnectionManager.pressed: a round now, at most one per pressure_interval.
            if not pressure.is_set() and cm.pressed(trio.current_time()):
                pressure.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            network = self.host.get_network()
            # One connection per peer (max_connections_per_peer=1 by default):
            # its side is the peer's. A later connection's event replaces the entry (its
            # side, a fresh grace).
            for peer in self.peers():
                conns = network.get_connections(peer)
                cm.connected(peer, trio.current_time(), is_inbound(conns[0]) if conns else None)
            self.resources.set_full_hook(full)
            try:
                next_round = trio.current_time() + cm.config.interval
                while True:
                    with trio.move_on_at(next_round):
                        await pressure.wait()
                    pressed = pressure.is_set()
                    if pressed:
                        pressure = trio.Event()  # full() sets the new one
                    else:
                        next_round = trio.current_time() + cm.config.interval
                    peers = self.peers()
                    try:
                        victims = cm.to_trim(trio.current_time(), peers, pressed=pressed)
                    except Exception as exc:  # noqa: BLE001 — a protector's bug must not stop the node
                        log.warning("connections: trim round failed: %r", exc)
                        continue
                    if victims:
                        log.debug("connections: closing %d of %d (low water %d)", len(victims), len(peers),
                                  cm.low_water)
                        # A peer that stops reading could stall a close (Yamux GO_AWAY):
                        # bounded, so the next round always comes.
                        with trio.move_on_after(max(5.0, cm.config.interval)):
                            await self._cut_off(victims)
            finally:
                self.resources.set_full_hook(None)

    async def _log_peer_events(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for ev in events:
            if ev.connected:
                log.info("peer connected: %s", ev.peer_id)
            else:
                log.info("peer disconnected: %s", ev.peer_id)

    async def _run_mdns(self) -> None:
        from agentp2p.protocol.mdns import run_mdns

        await run_mdns(self.host, self.dialer, self.peer_id)

    # -- identity and addresses -----------------------------------------------

    @property
    def peer_id(self) -> ID:
        return self.identity.peer_id

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """The transport addresses actually bound (port 0 resolved)."""
        return list(self.host.get_transport_addrs())

    @property
    def addrs(self) -> list[str]:
        """Full addresses ending in ``/p2p/<peer id>`` that other nodes can dial
        (a wildcard bind as each local interface's address, loopback last)."""
        return [with_peer_id(a, self.peer_id) for a in expand_wildcards(self.listen_addrs)]

    def dialable_addrs(self) -> list[str]:
        """:attr:`addrs`, loopback first: for a client on this machine (the
        control API's ``/node``)."""
        return sorted(self.addrs, key=lambda a: not is_loopback(a))

    # -- peers ------------------------------------------------------------------

    async def connect(self, peer: str | PeerInfo) -> ID:
        """Dial ``peer`` (a multiaddr ending in /p2p/<id>, or a PeerInfo)."""
        self._require_running()
        info = peer_info(peer)
        # An explicit dial overrides the swarm's 60 s "recently failed" cache
        # (the dialer always does); known addresses only, no DHT detour.
        # Returns once the peer has accepted the connection: a peer that
        # refuses us right after the handshake is an error here.
        await self.dialer.connect(info.peer_id, info.addrs, lookup=False)
        return info.peer_id

    async def disconnect(self, peer: ID | str) -> None:
        """Close our connections to ``peer``; the peer may dial again at once."""
        await self._close_connections(to_peer_id(peer))

    def peers(self) -> list[ID]:
        """Peers with at least one open connection."""
        return self.dialer.peers()

    def is_connected(self, peer: ID | str) -> bool:
        return self.dialer.is_connected(to_peer_id(peer))

    async def ping(self, peer: ID | str, timeout: float = 5.0) -> float:
        """Round-trip time to ``peer`` in seconds (libp2p ping protocol)."""
        self._require_running()
        return await ping(self.dialer, to_peer_id(peer), timeout)

    async def identify(self, peer: ID | str, timeout: float = 5.0) -> PeerIdentity:
        """Ask ``peer`` who it is (agent version, protocols, listen addresses)."""
        self._require_running()
        pid = to_peer_id(peer)
        try:
            with trio.fail_after(timeout):
                stream = await self.dialer.open_stream(pid, [str(IDENTIFY_PROTOCOL)], lookup=False)
                data = await read_to_eof(stream, 1 << 20, DialError)
                with contextlib.suppress(Exception):
                    await stream.close()
            msg = parse_identify_response(data)
        except trio.TooSlowError:
            raise DialError(f"identify {pid} timed out") from None
        except DialError:
            raise
        except Exception as exc:
            raise DialError(f"identify {pid} failed: {exc}") from None
        addrs = []
        for raw in msg.listen_addrs:
            with contextlib.suppress(Exception):
                addrs.append(str(Multiaddr(raw)))
        return PeerIdentity(pid, msg.agent_version, msg.protocol_version, list(msg.protocols), addrs)

    # -- pub/sub ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        """Subscribe to ``topic`` for the duration of the block."""
        self._require_running()
        sub = await self.pubsub.open_subscription(topic)
        try:
            yield sub
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.pubsub.close_subscription(sub)

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on ``topic``. Waits under backpressure; raises PubSubError instead of dropping."""
        self._require_running()
        await self.pubsub.publish(topic, data)

    def set_topic_validator(self, topic: str, validator: Validator | None) -> None:
        self.pubsub.set_validator(topic, validator)

    def topic_peers(self, topic: str) -> list[ID]:
        return self.pubsub.topic_peers(topic)

    # -- DHT --------------------------------------------------------------------

    async def dht_put(self, key: str, value: bytes) -> int:
        """Store ``value`` under ``key``; returns how many remote peers stored it
        (0 when there are none). Raises DHTError when peers exist but none did."""
        self._require_running()
        return await self.dht.put(key, value)

    async def dht_get(self, key: str) -> bytes | None:
        self._require_running()
        return await self.dht.get(key)

    async def provide(self, key: str) -> None:
        self._require_running()
        await self.dht.provide(key)

    async def find_providers(self, key: str, count: int = 20) -> list[PeerInfo]:
        self._require_running()
        return await self.dht.find_providers(key, count)

    async def find_peer(self, peer: ID | str) -> PeerInfo | None:
        self._require_running()
        return await self.dht.find_peer(to_peer_id(peer))

    # -- direct messages (agentp2p.messaging) ----------------------------------

    @property
    def messaging(self) -> MessagingService:
        return self.services["messaging"]  # type: ignore[return-value]

    async def send(
        self,
        peer: ID | str,
        payload: bytes,
        *,
        type: str = "message",
        timeout: float = 30.0,
        seal: bool = False,
        wait: str = "consumed",
    ) -> str:
        """Send ``payload`` reliably; returns the message id once the peer's
        application has taken it (``wait="stored"``: once the peer's durable
        inbox has it), raises ``DeliveryTimeout`` at ``timeout``, ``InboxFull``
        if the peer's inbox refused it. Receipts: ``node.messaging.send_with_receipt``."""
        self._require_running()
        return await self.messaging.send(to_peer_id(peer), payload, type=type, timeout=timeout, seal=seal, wait=wait)

    async def request(
        self, peer: ID | str, payload: bytes, *, type: str = "request", timeout: float = 30.0, seal: bool = False
    ) -> bytes:
        """Send a request and return the handler's response from ``peer``."""
        self._require_running()
        return await self.messaging.request(to_peer_id(peer), payload, type=type, timeout=timeout, seal=seal)

    def incoming(self) -> AsyncIterator[IncomingMessage]:
        """Direct messages to us, in order per sender. Each is acknowledged when
        the loop takes the next one or is left (at-least-once across crashes;
        see MessagingService.incoming)."""
        return self.messaging.incoming()

    async def receive(self, *, ack: bool = True) -> IncomingMessage:
        """The next direct message; ``ack=False``: unacknowledged until :meth:`ack`."""
        return await self.messaging.receive(ack=ack)

    def ack(self, msg: IncomingMessage | str) -> bool:
        """Acknowledge a direct message (or its id) taken with ``receive(ack=False)``."""
        return self.messaging.ack(msg)

    def set_handler(self, type: str, handler: Any) -> None:  # noqa: A002
        """Answer requests (and consume messages) of ``type`` with ``handler``."""
        self.messaging.set_handler(type, handler)

    # -- membership (agentp2p.protocol.swim) -----------------------------------

    def _swim(self) -> SwimService:
        svc = self.services.get("swim")
        if svc is None:
            raise NotRunningError("SWIM membership is off for this node (NodeConfig.swim = False)")
        return svc  # type: ignore[return-value]

    def members(self) -> list[MemberInfo]:
        """Every member SWIM knows, with its state (alive, suspect, dead, left)."""
        return self._swim().members()

    def member_events(self) -> contextlib.AbstractAsyncContextManager[trio.MemoryReceiveChannel[MembershipEvent]]:
        """``async with node.member_events() as events: async for e in events`` —
        joined, suspect, failed, left and recovered, as they happen."""
        return self._swim().events()

    # -- capability records (agentp2p.application.records) ---------------------

    def _records(self) -> RecordService:
        svc = self.services.get("records")
        if svc is None:
            raise NotRunningError(
                "this node publishes no agent record: pass services=[RecordService(name=..., capabilities=[...])]"
            )
        return svc  # type: ignore[return-value]

    async def find_agents(
        self, capability: str, tags: Sequence[str] = (), limit: int = 10
    ) -> list[RankedAgent]:
        """Verified records of live agents offering ``capability``, best first."""
        self._require_running()
        return await self._records().find_agents(capability, tags=tuple(tags), limit=limit)

    async def get_record(self, peer: ID | str, *, fresh: bool = False) -> AgentRecord | None:
        """The current, verified record of one agent (cache, the agent, then the DHT)."""
        self._require_running()
        return await self._records().get_record(to_peer_id(peer), fresh=fresh)

    # -- our own protocols ------------------------------------------------------

    def set_stream_handler(self, protocol: str, handler: Callable[[Any], Awaitable[None]]) -> None:
        """Serve ``protocol``; exceptions in ``handler`` reset the stream only."""
        self.context.set_stream_handler(protocol, handler)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the node's nursery (stops with the node)."""
        self._require_running().start_soon(fn, *args)

    # -- introspection ----------------------------------------------------------

    def _network_stats(self) -> dict[str, Any]:
        """What the inbound gate and the Yamux guard refused or closed (docs/security.md)."""
        from agentp2p.network.inbound import inbound_gate
        from agentp2p.network.yamux import yamux_guard

        gate, guard = inbound_gate(self.host), yamux_guard(self.host)
        return {
            "trimming": self.connections.stats() if self.connections is not None else {},
            # Connections left closed in the swarm's table, taken out (network/closing.py).
            "closing": self.closer.stats.as_dict(),
            "inbound": dict(gate.stats) if gate is not None else {},
            "pending_handshakes": gate.pending if gate is not None else 0,
            "yamux": dict(guard.stats) if guard is not None else {},
            # Connection events a subscriber lost to its full channel (SWIM re-syncs).
            "connection_events_dropped": self.events.dropped,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "peer_id": str(self.peer_id),
            "connections": len(self.peers()),
            "routing_table_size": self.dht.routing_table_size,
            "pubsub": self.pubsub.stats_dict(),
            "dht": self.dht.stats(),
            "dialer": {**self.dialer.stats.as_dict(), "by_purpose": dict(self.dialer.stats.by_purpose)},
            "handler_failures": dict(self.handler_failures.by_protocol),
            "resources": self.resources.stats(),
            "network": self._network_stats(),
            "penalties": self.penalties.stats(),
            "denylist": self.denylist.stats(),
            "allowlist": self.allowlist.stats(),
            "policy": {**self.authorizer.stats(), **self.gater.stats()},
            "trust": self.trust.stats(),
            **{name: svc.stats() for name, svc in self.services.items()},
            "bootstrap": {
                "attempts": self.bootstrapper.attempts,
                "successes": self.bootstrapper.successes,
                "rounds": self.bootstrapper.rounds,
            },
            "uptime_s": 0.0 if self.started_at is None else time.monotonic() - self.started_at,
        }
