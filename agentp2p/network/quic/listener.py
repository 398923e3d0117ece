"""The QUIC listener's two hazards in py-libp2p 0.8.1, and ours in their place.

* **A shared port.** ``QUICListener._create_socket`` sets ``SO_REUSEADDR`` and
  ``SO_REUSEPORT``: a second daemon binds the same UDP port without error
  and the kernel splits the first one's datagrams between them (for UDP,
  ``SO_REUSEADDR`` alone already allows that on Linux).
  :func:`create_exclusive_udp_socket` sets neither, as
  :mod:`agentp2p.network.listen` does for TCP, so the bind fails instead.
* **Unbounded handshakes.** Every Initial packet with a new connection ID
  makes an aioquic connection with its TLS state, kept as "pending" until
  the handshake ends or a clean-up sweep (every 10 s) finds it 15 s old.
  Datagrams cost an attacker nothing and need no reply: a flood grows that
  table without bound. :func:`bounded_handshakes` caps it, as the inbound
  gate caps TCP handshakes: when it is full, a pending handshake makes room
  — the oldest that has received one datagram only (a spoofed Initial never
  sends a second; an honest client's next flight comes a round trip later),
  else the oldest — forgotten under every connection ID and address that
  routed to it. Initials in datagrams under 1200 bytes, which RFC 9000 says
  a server discards, are dropped before any state is made (py-libp2p
  registered them first), and one whose packet aioquic cannot decrypt is
  forgotten at once: garbage cannot crowd out honest handshakes.
* **Handshakes cost CPU.** Each Initial that decrypts costs the server a
  TLS handshake (~2 ms here); an outside attack at 1,000 real Initials a
  second held the daemon at 100 % and no honest QUIC dial got through. New
  handshakes are rate-limited per source IP and in all
  (:data:`HANDSHAKES_PER_IP`, :data:`HANDSHAKES`): what is over is dropped
  before any work, and the client's retransmission tries again. (QUIC's
  Retry, which proves a source address, would need py-libp2p's listener
  rewritten; a flood from forged addresses still takes the shared budget.)
* **Unbounded connection IDs.** :func:`only_issued_connection_ids` and
  :func:`forget_retired_connection_ids`.
* **Early stream data lost.** While a handshake is pending the listener
  drains the connection's events and throws ``StreamDataReceived`` away
  (its comment says the connection's own loop will handle it; that loop
  never sees it). A client may send its first stream bytes with its
  handshake's last flight, in one datagram. :func:`keep_early_stream_data`
  puts those events back for the connection.
"""

from __future__ import annotations

import ipaddress
import socket as stdlib_socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from agentp2p.network.listen import bind_error_reason


async def create_exclusive_udp_socket(listener: object, host: str, port: int) -> trio.socket.SocketType:
    """Bound UDP socket for ``QUICListener`` (replaces ``_create_socket``)."""
    from libp2p.transport.quic.exceptions import QUICListenError

    try:
        family = stdlib_socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else stdlib_socket.AF_INET
    except ValueError:
        family = stdlib_socket.AF_INET
    sock = trio.socket.socket(family=family, type=stdlib_socket.SOCK_DGRAM)
    try:
        if family == stdlib_socket.AF_INET6:
            sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 1)
        await sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise QUICListenError(f"Failed to listen on udp {host}:{port}: {bind_error_reason(exc)}") from exc
    return sock


#: Attribute of the transport config that carries the cap (set by
#: :func:`agentp2p.network.quic.transport_config`).
PENDING_LIMIT = "agentp2p_max_pending_handshakes"
DEFAULT_PENDING_LIMIT = 64
EVICTED = "agentp2p_evicted_handshakes"
DROPPED_SHORT = "agentp2p_short_initials_dropped"
DROPPED_UNDECRYPTABLE = "agentp2p_undecryptable_initials_dropped"
#: RFC 9000 section 14.1: a server discards an Initial in a datagram under 1200 bytes.
MIN_INITIAL_DATAGRAM = 1200
#: New handshakes per second (and burst) from one source IP, and in all.
HANDSHAKES_PER_IP = (20.0, 40.0)
HANDSHAKES = (100.0, 200.0)
DROPPED_RATE = "agentp2p_initials_over_rate"

NewConnection = Callable[..., Awaitable[Any]]


class CountedDatagrams:
    """Mixin for the listener's aioquic connection: how many datagrams it has
    taken. A handshake that got only its first is the one to evict (a spoofed
    Initial never gets a second; an honest client's next flight follows)."""

    agentp2p_datagrams = 0

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.agentp2p_datagrams += 1
        super().receive_datagram(data, addr, now)  # type: ignore[misc]


def bounded_handshakes(handle_new_connection: NewConnection) -> NewConnection:
    """Wrap ``QUICListener._handle_new_connection``: short Initials are dropped
    before any state is made, a handshake whose first packet aioquic could
    not decrypt is forgotten at once, and the pending table is capped."""

    async def _handle_new_connection(self: Any, data: bytes, addr: Any, packet_info: Any) -> Any:
        if len(data) < MIN_INITIAL_DATAGRAM:
            _count(self, DROPPED_SHORT)
            return None
        if not _handshake_allowed(self, addr[0]):
            _count(self, DROPPED_RATE)
            return None
        limit = getattr(self._config, PENDING_LIMIT, DEFAULT_PENDING_LIMIT)
        while len(self._registry._pending) >= limit:
            victim = _oldest_pending(self._registry)
            if victim is None:
                break
            await _forget(self, victim)
            _count(self, EVICTED)
        quic_conn = await handle_new_connection(self, data, addr, packet_info)
        if quic_conn is not None and not _accepted_a_packet(quic_conn):
            # Garbage shaped like an Initial: no pending slot for it.
            await _forget(self, quic_conn)
            _count(self, DROPPED_UNDECRYPTABLE)
            return None
        return quic_conn

    return _handle_new_connection


def _count(listener: Any, counter: str) -> None:
    """Bump one of the listener's drop counters (attributes, read by tests)."""
    setattr(listener, counter, getattr(listener, counter, 0) + 1)


def _handshake_allowed(listener: Any, ip: str) -> bool:
    """One token from the source IP's bucket and from the listener's."""
    from agentp2p.network.ratelimit import PeerRateLimiter

    limiters = getattr(listener, "_agentp2p_handshake_limiters", None)
    if limiters is None:
        limiters = (PeerRateLimiter(*HANDSHAKES_PER_IP), PeerRateLimiter(*HANDSHAKES))
        listener._agentp2p_handshake_limiters = limiters
    now = time.monotonic()
    per_ip, total = limiters
    return per_ip.allow(ip, now) and total.allow(None, now)


def _accepted_a_packet(quic_conn: Any) -> bool:
    """Whether aioquic decrypted any packet of this connection."""
    return any(space.largest_received_packet >= 0 for space in quic_conn._spaces.values())


def _oldest_pending(registry: Any) -> Any:
    """The oldest pending handshake that got a single datagram, else the oldest."""
    pending = [(registry._pending_created_at.get(cid, 0.0), conn) for cid, conn in registry._pending.items()]
    if not pending:
        return None
    pending.sort(key=lambda p: (getattr(p[1], "agentp2p_datagrams", 0) > 1, p[0]))
    return pending[0][1]


async def _forget(listener: Any, victim: Any) -> None:
    """Drop a pending handshake under every ID and address that routes to it."""
    registry = listener._registry
    async with registry._lock:
        for table in (registry._pending, registry._initial_connection_ids):
            for cid in [c for c, conn in table.items() if conn is victim]:
                del table[cid]
                registry._pending_created_at.pop(cid, None)
                registry._connection_id_sequences.pop(cid, None)
                registry._connection_sequence_counters.pop(cid, None)
                addr = registry._connection_id_to_addr.pop(cid, None)
                if addr is not None and registry._addr_to_connection_id.get(addr) == cid:
                    del registry._addr_to_connection_id[addr]
    listener._pending_cid_by_quic_id.pop(id(victim), None)
    listener._handler_invoked_quic_ids.discard(id(victim))


def only_issued_connection_ids(register: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrap ``ConnectionIDRegistry.register_new_connection_id_for_existing_conn``.

    A short-header packet with an unknown connection ID from the address of
    a connection is routed to it, and py-libp2p registers that ID for it (for
    IDs we issued whose ``ConnectionIdIssued`` event is not processed yet),
    with no check, cap or expiry: random IDs from a peer — or from anyone who
    forges its address — grew memory by ~2 MB/s. Only IDs the connection
    issued are registered now (aioquic drops a packet to any other ID anyway).
    """

    async def register_new_connection_id_for_existing_conn(
        self: Any, new_connection_id: bytes, connection: Any, addr: Any, sequence: int | None = None
    ) -> None:
        quic = getattr(connection, "_quic", None)
        if quic is None or all(issued.cid != new_connection_id for issued in quic._host_cids):
            return
        await register(self, new_connection_id, connection, addr, sequence)

    return register_new_connection_id_for_existing_conn


def forget_retired_connection_ids(handle: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrap ``QUICConnection._handle_connection_id_retired``.

    When the peer retires one of our connection IDs, aioquic issues another
    and the listener registers it, but the retired one stays registered and
    the connection keeps it in a set: a peer that retires IDs in a loop grew
    memory by ~0.4 KB per ID (outside attack: 49,000 in 60 s from one
    connection). The retired ID is now forgotten in both places.
    """

    async def _handle_connection_id_retired(self: Any, event: Any) -> None:
        await handle(self, event)
        self._retired_connection_ids.discard(event.connection_id)  # kept for a count only
        listener = getattr(self, "_listener", None)
        if listener is not None:
            registry = listener._registry
            await registry.remove_connection_id(event.connection_id)
            if self._listener_connection_id == event.connection_id:
                # New IDs are registered beside this one: point it at an ID
                # still registered (the registry repointed its primary).
                self._listener_connection_id = registry._connection_primary_cid.get(self)

    return _handle_connection_id_retired


ProcessEvents = Callable[[Any, Any, Any, bytes], Awaitable[None]]


def keep_early_stream_data(process_events: ProcessEvents) -> ProcessEvents:
    """Wrap ``QUICListener._process_quic_events``: stream data it would
    drain from a pending connection goes back, in order, to the front of
    the connection's events, and the promoted connection is woken for it."""
    from aioquic.quic.events import StreamDataReceived

    async def _process_quic_events(self: Any, quic_conn: Any, addr: Any, destination_connection_id: bytes) -> None:
        held: list[Any] = []
        pop = quic_conn.next_event
        own = "next_event" in vars(quic_conn)

        def next_event() -> Any:
            while True:
                event = pop()
                if not isinstance(event, StreamDataReceived):
                    return event
                held.append(event)

        quic_conn.next_event = next_event
        try:
            await process_events(self, quic_conn, addr, destination_connection_id)
        finally:
            if own:
                quic_conn.next_event = pop
            else:
                del quic_conn.next_event
            if held:
                quic_conn._events.extendleft(reversed(held))
        if held:
            connection, _, _ = await self._registry.find_by_connection_id(destination_connection_id)
            if connection is not None:
                connection._signal_activity()

    return _process_quic_events
