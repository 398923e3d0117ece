"""What a service may use of the node it runs on — and nothing more.

A service (membership, messaging, records, the control API) is handed a
:class:`NodeContext` when the node is assembled and depends on that alone,
never on :class:`~agentp2p.node.Node`: so no service imports ``node.py``, a
service can be run against a fake context in a test, and what a protocol
decides stays apart from how the node moves bytes (rust-libp2p's
``NetworkBehaviour`` vs ``Swarm``). Events flow up through the context
(connection events, stream handlers); services do not call each other except
through hooks the assembly wires (e.g. SWIM's verdicts feeding records'
liveness).

The contract, in one place:

* who we are: ``peer_id``, ``identity`` (keys), ``state_path()`` (files kept across restarts);
* where we are: ``listen_addrs()``;
* serving: ``set_stream_handler``, ``remove_stream_handler``;
* reaching others: ``dialer`` (the one dialer, :mod:`agentp2p.network.dialer`),
  ``dial_back`` (a fresh connection that proves who answers, then closes:
  AutoNAT's server), ``adopt_outbound``/``adopt_inbound`` (a relay's
  circuit made a connection), ``direct`` (turning a relayed connection
  into a direct one: hole punching);
* what peers serve: ``protocols_of`` (from identify);
* what happens: ``events`` (connections opened and closed);
* shared substrates: ``pubsub`` and ``dht`` (narrow views below);
* accounting: ``resources`` (memory reservations) and ``offence``;
* authorization: ``authorizer`` (may this peer publish, send, call...?);
* time: ``now()`` (trio's clock: the one the simulator can replace).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

__all__ = ["Authorizing", "DirectConnecting", "NodeContext", "NodeService", "Dialing", "PubSubAccess", "DHTAccess", "ConnectionEventSource"]

StreamHandler = Callable[[Any], Awaitable[None]]


class Dialing(Protocol):
    """Reaching peers: implemented by :class:`agentp2p.network.dialer.Dialer`."""

    timeout: float

    def is_connected(self, peer: ID) -> bool: ...

    def is_relayed(self, peer: ID) -> bool: ...

    def peers(self) -> list[ID]: ...

    def known_addrs(self, peer: ID) -> list[Multiaddr]: ...

    def add_addrs(self, peer: ID, addrs: Iterable[Multiaddr | bytes | str], ttl: int = ...) -> None: ...

    async def connect(
        self, peer: ID, addrs: Iterable[Multiaddr | bytes | str] = (), *, timeout: float | None = None,
        lookup: bool = True, confirm: bool = True, purpose: str = ...,
    ) -> None: ...

    async def open_stream(
        self, peer: ID, protocols: Sequence[str], *, addrs: Iterable[Multiaddr | bytes | str] = (),
        timeout: float | None = None, dial: bool = True, lookup: bool = True, lazy: bool = False,
        optimistic: bool = False,
    ) -> Any: ...


class ConnectionEventSource(Protocol):
    def subscribe(self, capacity: int = ...,
                  on_gap: Callable[[], None] | None = ...) -> trio.MemoryReceiveChannel[Any]: ...


class PubSubAccess(Protocol):
    """The pub/sub router as services see it (records' announcements)."""

    async def open_subscription(self, topic: str) -> Any: ...

    async def close_subscription(self, sub: Any) -> None: ...

    async def publish(self, topic: str, data: bytes) -> None: ...

    def set_validator(self, topic: str, validator: Any) -> None: ...

    def topic_peers(self, topic: str) -> list[ID]: ...


class DHTAccess(Protocol):
    """The DHT as services see it (records' puts, gets and providers)."""

    query_timeout: float

    @property
    def routing_table_size(self) -> int: ...

    def register_validator(self, namespace: str, validator: Any) -> None: ...

    async def put_raw(self, key: str, value: bytes) -> int: ...

    async def get_raw(self, key: str) -> bytes | None: ...

    async def provide(self, key: str) -> int: ...

    async def find_providers(self, key: str, count: int = 20, *,
                             on_provider: Callable[[PeerInfo], None] | None = None) -> list[PeerInfo]: ...

    async def find_peer(self, peer_id: ID) -> PeerInfo | None: ...


class DirectConnecting(Protocol):
    """Upgrading relayed connections to direct ones (DCUtR): implemented by
    :class:`agentp2p.network.punch.DirectConnector`."""

    def has_direct(self, peer: ID) -> bool: ...

    def relayed_inbound(self, peer: ID) -> bool: ...

    def relayed_outbound(self, peer: ID) -> bool: ...

    async def observed_ip(self, peer: ID, timeout: float) -> str | None: ...

    def port(self, ipv6: bool = False) -> Any: ...

    async def punch(self, peer: ID, port: Any, addrs: list[tuple[str, int]], *, as_client: bool,
                    timeout: float) -> None: ...

    async def dial_fresh(self, peer: ID, addrs: list[tuple[str, int]], timeout: float) -> None: ...

    async def retire_relayed(self, peer: ID, grace: float) -> int: ...


class Authorizing(Protocol):
    """The node's authorization policy as services see it
    (:class:`agentp2p.security.authorizer.Authorizer`)."""

    def governs(self, action: str) -> bool: ...

    def check(self, peer: ID, action: str, resource: str) -> bool: ...

    def pending(self, peer: ID, action: str) -> bool: ...

    async def resolve(self, peer: ID) -> None: ...

    async def authorize(self, peer: ID, action: str, resource: str) -> bool: ...


class NodeContext(Protocol):
    """Everything a service may use of its node (see the module doc)."""

    peer_id: ID
    identity: Any  # agentp2p.network.identity.Identity: private_key, public_key
    dialer: Dialing
    events: ConnectionEventSource
    pubsub: PubSubAccess
    dht: DHTAccess
    resources: Any  # agentp2p.network.resources.ResourceManager
    authorizer: Authorizing
    direct: DirectConnecting

    def listen_addrs(self) -> list[Multiaddr]: ...

    def state_path(self, suffix: str) -> Path | None:
        """A file for state kept across restarts, unique to this identity
        (beside the identity file); None for an ephemeral node."""
        ...

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None: ...

    def remove_stream_handler(self, protocol: str) -> None: ...

    def push_identify(self) -> None:
        """Tell connected peers our protocols or addresses changed (identify push)."""
        ...

    def protocols_of(self, peer: ID) -> list[str]:
        """The protocols ``peer`` said it serves (identify); [] if not known yet."""
        ...

    async def adopt_outbound(self, stream: Any, peer: ID, addr: Multiaddr) -> None:
        """Make ``stream`` (a circuit through a relay) our connection to ``peer``."""
        ...

    async def adopt_inbound(self, stream: Any, addr: Multiaddr) -> None:
        """Take ``stream`` (a circuit to us) as an inbound connection; returns when it closes."""
        ...

    async def dial_back(self, peer: ID, addr: Multiaddr, timeout: float) -> None:
        """Connect to ``peer`` at ``addr`` anew, finish the security handshake
        and close (never the open connection); DialBackError on failure."""
        ...

    def offence(self, peer: ID | None, reason: str, weight: float = 1.0) -> None: ...

    def now(self) -> float: ...


@runtime_checkable
class NodeService(Protocol):
    """A protocol that runs on a node (membership, messaging, records...).

    ``attach`` runs when the node is assembled — before it listens — so the
    service can register stream handlers and validators in time for the
    first peer. ``run`` runs in the node's nursery once the node listens and
    is cancelled when the node stops; a ``run`` that takes ``task_status``
    is started with ``nursery.start`` and so is usable as soon as
    ``async with Node(...)`` returns. A service may also define
    ``async def stopping(self, ctx)``: awaited (bounded) before the node
    cancels its services, while streams still work — the place for goodbyes
    such as SWIM's "left". ``stats()`` returns a JSON-ready dict, shown
    under the service's name in ``node.stats()``.
    """

    name: str

    def attach(self, ctx: NodeContext) -> None: ...

    async def run(self, ctx: NodeContext) -> None: ...

    def stats(self) -> dict[str, Any]: ...

