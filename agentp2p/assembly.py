"""Build a node from a :class:`~agentp2p.config.NodeConfig` — the one place that does.

The daemon, the tests, the benchmarks and Python users all get their node
from here (``Node(config)`` calls :func:`assemble`). It decides, once:

* the host and its guards (Noise only, our Yamux, the inbound gate, the
  resource manager, the penalty box and the deny list);
* the substrates: connection events, the one :class:`Dialer`, pub/sub, DHT,
  bootstrap;
* the services (messaging, SWIM, records, the control API...), each handed a
  :class:`ServiceContext` — the narrow contract of :mod:`agentp2p.contract` —
  and never the node itself;
* the wiring between services, which flows through hooks set here and
  nowhere else (SWIM's verdicts feed the records service's liveness).

Layering: this module imports services; services import only the contract
and the network layer; ``node.py`` (the public facade) imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from agentp2p.config import NodeConfig
from agentp2p.contract import NodeService, StreamHandler
from agentp2p.errors import ConfigError
from agentp2p.network.addresses import parse_listen_addr, parse_peer_addr, to_peer_id
from agentp2p.network.interfaces import expand_wildcards
from agentp2p.network.allowlist import AllowList
from agentp2p.network.connection_manager import ConnectionManager, round_robin
from agentp2p.network.denylist import DenyList
from agentp2p.network.dialback import dial_back
from agentp2p.network.dialer import Dialer
from agentp2p.network.events import ConnectionEvents
from agentp2p.network.handlers import HandlerFailures, contained
from agentp2p.network.host import HostLimits, advertise_extra_addrs, build_host
from agentp2p.network.psk import read_psk_file
from agentp2p.network.punch import DirectConnector
from agentp2p.network.relayed import adopt_inbound, adopt_outbound
from agentp2p.network.identify import push_identify
from agentp2p.network.identity import Identity, load_or_create_identity
from agentp2p.network.penalties import BanInfo, PenaltyBox
from agentp2p.network.resources import ResourceManager
from agentp2p.protocol.bootstrap import Bootstrapper
from agentp2p.protocol.dht import DHT
from agentp2p.protocol.membership import Membership
from agentp2p.protocol.pubsub import PubSub
from agentp2p.security.authorizer import Authorizer
from agentp2p.security.certificates import CertificateError, CertificateExpired
from agentp2p.security.trust import Pin, TrustBook

log = logging.getLogger("agentp2p.assembly")

__all__ = ["NodeParts", "ServiceContext", "assemble", "default_services"]


class ServiceContext:
    """The :class:`~agentp2p.contract.NodeContext` every service is handed.

    ``facade`` is the public :class:`~agentp2p.node.Node`, set once the node
    is built: only application-layer services that expose the whole node
    (the control API) use it; protocol services must not.
    """

    def __init__(
        self,
        *,
        identity: Identity,
        identity_path: Path | None,
        host: Any,
        dialer: Dialer,
        events: ConnectionEvents,
        pubsub: PubSub,
        dht: DHT,
        resources: ResourceManager,
        offence: Callable[[ID | None, str, float], None],
        handler_failures: HandlerFailures,
        authorizer: Authorizer,
    ) -> None:
        self.identity = identity
        self.peer_id: ID = identity.peer_id  # Identity.peer_id re-derives on each access
        self._identity_path = identity_path
        self.dialer = dialer
        self.events = events
        self.pubsub = pubsub
        self.dht = dht
        self.resources = resources
        self.authorizer = authorizer
        self.direct = DirectConnector(host, dialer)
        self._offence = offence
        self._host = host
        self._handler_failures = handler_failures
        self.facade: Any = None
        #: Where background work of the context runs (identify pushes); set by the node.
        self.nursery: trio.Nursery | None = None
        #: More addresses to advertise (the relay service's circuits); set by the assembly.
        self.extra_addrs: Callable[[], list[Multiaddr]] = lambda: []

    def listen_addrs(self) -> list[Multiaddr]:
        """Where peers can reach us: the transport addresses actually bound
        (port 0 resolved, a wildcard bind as each interface's address), then
        ``/p2p-circuit`` ones through our relays."""
        return [*expand_wildcards(self._host.get_transport_addrs()), *self.extra_addrs()]

    def state_path(self, suffix: str) -> Path | None:
        return _beside(self._identity_path, suffix)

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol``; an exception in ``handler`` resets that stream only
        (and counts against the peer), never the host."""
        self._host.set_stream_handler(TProtocol(protocol), contained(handler, protocol, self._handler_failures))

    def push_identify(self) -> None:
        """Tell connected peers now that our protocols or addresses changed
        (identify push; bounded, in the background)."""
        push_identify(self._host, self.nursery)

    def remove_stream_handler(self, protocol: str) -> None:
        """Stop serving ``protocol`` (new streams for it are refused in negotiation)."""
        self._host.remove_stream_handler(TProtocol(protocol))

    def protocols_of(self, peer: ID) -> list[str]:
        try:
            return [str(p) for p in self._host.get_peerstore().get_protocols(peer) or ()]
        except Exception:  # noqa: BLE001 — py-libp2p raises for a peer it has no entry for
            return []

    async def dial_back(self, peer: ID, addr: Multiaddr, timeout: float) -> None:
        await dial_back(self._host, peer, addr, timeout)

    async def adopt_outbound(self, stream: Any, peer: ID, addr: Multiaddr) -> None:
        await adopt_outbound(self._host, stream, peer, addr)

    async def adopt_inbound(self, stream: Any, addr: Multiaddr) -> None:
        await adopt_inbound(self._host, stream, addr)

    def offence(self, peer: ID | None, reason: str, weight: float = 1.0) -> None:
        self._offence(peer, reason, weight)

    def now(self) -> float:
        return trio.current_time()


@dataclass
class NodeParts:
    """Everything :func:`assemble` built, for the :class:`~agentp2p.node.Node` facade to own."""

    config: NodeConfig
    identity: Identity
    listen: list[Multiaddr]
    penalties: PenaltyBox
    resources: ResourceManager
    handler_failures: HandlerFailures
    host: Any
    events: ConnectionEvents
    dialer: Dialer
    pubsub: PubSub
    dht: DHT
    bootstrapper: Bootstrapper
    context: ServiceContext
    services: dict[str, NodeService] = field(default_factory=dict)
    denylist: DenyList = field(default_factory=DenyList)
    allowlist: AllowList = field(default_factory=AllowList)
    authorizer: Authorizer | None = None
    trust: TrustBook = field(default_factory=TrustBook)
    trust_path: Path | None = None
    #: Banned now, by the penalty box or by trust (the predicate the gates use).
    is_banned: Callable[[ID], bool] = lambda _peer: False
    #: Closes idle connections above the high-water mark (Node._manage_connections runs it).
    connections: ConnectionManager | None = None


def default_services(config: NodeConfig, given: Sequence[NodeService] = ()) -> list[NodeService]:
    """The services every node runs unless ``given`` names its own of that name:
    messaging, SWIM (``[swim] enabled``), a records service that looks
    agents up even when this node publishes no record of its own, and
    AutoNAT (``[autonat]``: is this node reachable from outside?), the relay
    and hole punching (``[holepunch]``: relayed connections made direct)."""
    names = {s.name for s in given}
    out: list[NodeService] = []
    if "messaging" not in names:
        from agentp2p.messaging.service import MessagingService

        out.append(MessagingService(config=config.messaging, store_path=config.messaging.store))
    if "swim" not in names and config.swim.enabled:
        from agentp2p.protocol.swim.service import SwimService

        out.append(SwimService(config.swim))
    if "records" not in names:
        from agentp2p.application.records.service import RecordService

        out.append(RecordService.lookup_only())
    if "relay" not in names:
        from agentp2p.protocol.relay.service import RelayService

        out.append(RelayService(config.relay))
    if "autonat" not in names and (config.autonat.client or config.autonat.server):
        from agentp2p.protocol.autonat.service import AutoNATService

        out.append(AutoNATService(config.autonat))
    if "holepunch" not in names and config.holepunch.enabled:
        from agentp2p.protocol.holepunch.service import HolePunchService

        out.append(HolePunchService(config.holepunch))
    return out


def _wire(services: dict[str, NodeService], dht: DHT, dialer: Dialer, context: ServiceContext) -> None:
    """Hooks between services (events flow up, never sideways): set here only."""
    autonat, relay = services.get("autonat"), services.get("relay")
    if autonat is not None and hasattr(autonat, "on_change"):
        from agentp2p.protocol.autonat.verdict import Reachability

        autonat.on_change(lambda status, _addrs: dht.follow_reachability(status is Reachability.PRIVATE))
        if relay is not None and hasattr(relay, "follow_reachability"):
            autonat.on_change(lambda status, addrs: relay.follow_reachability(
                public=status is Reachability.PUBLIC, private=status is Reachability.PRIVATE, addrs=addrs))
    if relay is not None and hasattr(relay, "dial") and hasattr(relay, "circuit_addrs"):
        dialer.use_relay(relay.dial)
        context.extra_addrs = relay.circuit_addrs
    records, swim = services.get("records"), services.get("swim")
    if records is not None and swim is not None and hasattr(records, "use_liveness"):
        from agentp2p.application.records.ranking import Liveness

        levels = {"alive": Liveness.ALIVE, "suspect": Liveness.SUSPECT, "dead": Liveness.DEAD, "left": Liveness.DEAD}
        state_of = swim.state_of  # type: ignore[attr-defined]
        records.use_liveness(lambda peer: levels.get(state_of(peer) or "", Liveness.UNKNOWN))


def _protect(connections: ConnectionManager, pubsub: PubSub, services: dict[str, NodeService]) -> None:
    """What the connection manager must never close: our gossipsub meshes
    (a mesh peer closed is a hole in the topic until the next heartbeat),
    the relay's peers (reservations and circuits: relay/service.py),
    messaging peers with messages in flight (closing would force a redial
    and a retransmission), and the members SWIM probes now or next, the
    ring predecessor that probes us (a probe that has to dial first times
    out, and a live member is suspected) and the members SWIM has held
    longest (so that a peer crowding our connections cannot get every
    neighbour that probes us trimmed)."""
    # Topic by topic in turn, so every topic's mesh gets its share of the cap.
    connections.add_protector(lambda: round_robin([pubsub.mesh_peers(t) for t in pubsub.topics()]))
    relay = services.get("relay")
    if relay is not None and hasattr(relay, "protected_peers"):
        connections.add_protector(relay.protected_peers)  # type: ignore[attr-defined]
    messaging = services.get("messaging")
    if messaging is not None and hasattr(messaging, "busy_peers"):
        connections.add_protector(messaging.busy_peers)  # type: ignore[attr-defined]
    swim = services.get("swim")
    if swim is not None and hasattr(swim, "protected_peers"):
        connections.add_protector(swim.protected_peers)  # type: ignore[attr-defined]


def assemble(
    config: NodeConfig,
    *,
    identity: Identity | None = None,
    services: Sequence[NodeService] = (),
    on_ban: Callable[[ID, BanInfo], None],
    on_distrust: Callable[[ID], None] = lambda _peer: None,
) -> NodeParts:
    """Build every part of a node (nothing runs yet; ``Node`` starts them)."""
    if identity is None:
        path = config.identity_path
        identity = load_or_create_identity(path) if path is not None else Identity.generate()
    listen = [parse_listen_addr(a) for a in config.listen]
    bootstrap = [parse_peer_addr(a) for a in config.bootstrap]
    me = identity.peer_id

    # Containment and limits report offences here; a peer that keeps
    # offending is disconnected and refused for a while (docs/security.md).
    penalties = PenaltyBox(config.penalties, on_ban=on_ban)
    # ... and lose trust, which decays slowly and lasts across restarts.
    trust = TrustBook(config.trust)
    trust_path = _beside(config.identity_path, ".trust.json")
    if trust_path is not None:
        try:
            loaded = trust.load(trust_path)
        except ValueError as exc:
            log.warning("%s", exc)
        else:
            if loaded:
                log.info("trust: %d peer(s) remembered from %s", loaded, trust_path)
    # Peers refused by decision rather than behaviour (an operator, a test
    # network's partition): refused wherever banned peers are.
    denylist = DenyList()
    denylist.deny([to_peer_id(p) for p in config.deny])  # validated; DenyListFull past its bound
    # With allow_only, every peer not named on it is refused the same way.
    allowlist = AllowList((to_peer_id(p) for p in config.allow), enabled=config.allow_only)

    # Who may connect, publish, subscribe, send and call here (docs/security.md).
    authorizer = _authorizer(config, me)

    def banned(peer: ID) -> bool:
        # A peer pinned as trusted is spared the penalty box; never the deny list.
        if trust.refuses(peer):
            return True
        return penalties.is_banned(peer) and trust.pinned(peer) is not Pin.TRUSTED

    def refused(peer: ID) -> bool:
        return banned(peer) or peer in denylist or not allowlist.permits(peer) or authorizer.refuses_connection(peer)

    def offence(peer: ID | None, reason: str, weight: float = 1.0) -> None:
        if peer is None or peer == me or trust.pinned(peer) is Pin.TRUSTED:
            return
        penalties.offence(peer, reason, weight)
        if trust.record(peer, reason, -weight * config.trust.offence_scale):
            on_distrust(peer)

    resources = ResourceManager(config.resources, on_hit=lambda peer, limit: offence(peer, f"limit:{limit}"))
    handler_failures = HandlerFailures(on_failure=lambda peer, protocol: offence(peer, f"handler:{protocol}", 2.0))
    host = build_host(
        identity,
        listen,
        HostLimits(
            max_connections=config.max_connections,
            max_connections_per_peer=config.max_connections_per_peer,
            dial_timeout=config.dial_timeout,
        ),
        handler_failures,
        resources=resources,
        is_banned=refused,
        on_offence=offence,
        psk=read_psk_file(config.psk) if config.psk is not None else None,
    )
    events = ConnectionEvents(host)
    host.get_network().register_notifee(events)
    connections = ConnectionManager(config.connections, config.connection_limit)
    if connections.active:  # off, nothing would ever prune what the hook records
        events.on_use = lambda peer: connections.used(peer, trio.current_time())
    dialer = Dialer(
        host, timeout=config.dial_timeout, is_banned=banned, is_denied=denylist.__contains__,
        is_permitted=allowlist.permits, refused_by_policy=authorizer.refuses_connection,
    )
    pubsub = PubSub(config.pubsub, identity=identity, resources=resources, offence=offence, authorizer=authorizer)
    dht = DHT(host, config.dht, offence=offence, assume_servers=[info.peer_id for info in bootstrap])
    dialer.use_lookup(dht.locate)
    # Every node stores agent records for others, whether or not it publishes one.
    from agentp2p.application.records.validator import AgentRecordValidator

    dht.register_validator(AgentRecordValidator.namespace, AgentRecordValidator())
    bootstrapper = Bootstrapper(
        dialer,
        [p for p in bootstrap if p.peer_id != me],  # a fleet's shared list names us too
        on_connected=dht.self_lookup,
        initial_delay=config.bootstrap_retry_initial,
        max_delay=config.bootstrap_retry_max,
    )
    context = ServiceContext(
        identity=identity,
        identity_path=config.identity_path,
        host=host,
        dialer=dialer,
        events=events,
        pubsub=pubsub,
        dht=dht,
        resources=resources,
        offence=offence,
        handler_failures=handler_failures,
        authorizer=authorizer,
    )
    Membership(authorizer).attach(context)  # presents our certificates, fetches peers'
    pubsub.attach(context)  # meshsub handlers, dialer, connection events
    dht.attach(context)  # kad handlers (server mode), dialer, connection events
    parts = NodeParts(
        config, identity, listen, penalties, resources, handler_failures, host, events, dialer, pubsub, dht,
        bootstrapper, context, denylist=denylist, allowlist=allowlist, authorizer=authorizer,
        trust=trust, trust_path=trust_path, is_banned=banned,
    )
    for service in [*services, *default_services(config, services)]:
        if service.name in parts.services:
            raise ValueError(f"a service named {service.name!r} is already attached")
        service.attach(context)
        parts.services[service.name] = service
    _wire(parts.services, dht, dialer, context)
    advertise_extra_addrs(host, lambda: context.extra_addrs())
    _protect(connections, pubsub, parts.services)
    parts.connections = connections
    records = parts.services.get("records")
    if records is not None and hasattr(records, "use_trust"):
        records.use_trust(trust.deprioritized)  # distrusted agents ranked last
    return parts


def _beside(identity_path: Path | None, suffix: str) -> Path | None:
    """A state file beside the identity file (``alice.key`` + suffix); None for an ephemeral node."""
    if identity_path is None:
        return None
    p = identity_path.expanduser()
    return p.with_name(p.name + suffix)


def _authorizer(config: NodeConfig, me: ID) -> Authorizer:
    """The policy from the config, and our certificates: an expired one is
    skipped with a warning (a restart must not fail on a certificate that
    ran out), one that is not ours or not a certificate is a ConfigError."""
    authorizer = Authorizer(me, config.load_policy())
    now = authorizer.clock_ms()
    for name, raw in zip(config.certificates, config.load_certificates(), strict=True):
        try:
            authorizer.book.add_own(raw, now)
        except CertificateExpired as exc:
            log.warning("certificate file %s skipped: %s", name, exc)
        except CertificateError as exc:
            raise ConfigError(f"certificate file {name}: {exc}") from None
    return authorizer


def peer_info(peer: str | PeerInfo) -> PeerInfo:
    """A dial target from a ``/p2p/``-terminated multiaddr string or a PeerInfo."""
    return parse_peer_addr(peer) if isinstance(peer, str) else peer
