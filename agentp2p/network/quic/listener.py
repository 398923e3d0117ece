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
  gate caps TCP handshakes: when it is full, the oldest pending handshake
  makes room (an honest one completes in a round trip, so it is rarely the
  oldest).
"""

from __future__ import annotations

import errno
import ipaddress
import socket as stdlib_socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio


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
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise QUICListenError(f"Failed to listen on udp {host}:{port}: {reason}") from exc
    return sock


#: Attribute of the transport config that carries the cap (set by
#: :func:`agentp2p.network.quic.transport_config`).
PENDING_LIMIT = "agentp2p_max_pending_handshakes"
DEFAULT_PENDING_LIMIT = 64
EVICTED = "agentp2p_evicted_handshakes"

NewConnection = Callable[..., Awaitable[Any]]


def bounded_handshakes(handle_new_connection: NewConnection) -> NewConnection:
    """Wrap ``QUICListener._handle_new_connection`` with the pending cap."""

    async def _handle_new_connection(self: Any, data: bytes, addr: Any, packet_info: Any) -> Any:
        limit = getattr(self._config, PENDING_LIMIT, DEFAULT_PENDING_LIMIT)
        while len(self._registry._pending) >= limit and await _evict_oldest(self):
            setattr(self, EVICTED, getattr(self, EVICTED, 0) + 1)
        return await handle_new_connection(self, data, addr, packet_info)

    return _handle_new_connection


async def _evict_oldest(listener: Any) -> bool:
    """Drop the oldest pending handshake with the listener's own clean-up
    (which forgets every ID that routes to it); False if none is left."""
    registry = listener._registry
    created = [registry._pending_created_at[c] for c in registry._pending if c in registry._pending_created_at]
    if not created:
        return False
    oldest = min(created)
    stale = set(await registry.cleanup_stale_pending(max_age=max(0.0, time.time() - oldest - 1e-6)))
    async with listener._promotion_lock:
        for qid, cid in list(listener._pending_cid_by_quic_id.items()):
            if cid in stale:
                del listener._pending_cid_by_quic_id[qid]
                listener._handler_invoked_quic_ids.discard(qid)
    return bool(stale)
