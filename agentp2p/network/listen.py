"""TCP listeners that own their port.

py-libp2p 0.8.1 opens every TCP listener with ``SO_REUSEPORT``
(``libp2p.transport.tcp.tcp._open_reuseport_listeners``, for hole punching,
which we do not use). Two processes that both set it may listen on the same
port at once, and the kernel then splits inbound connections between them: a
second daemon on a port already in use started without error and took half
of the first one's dials.

:func:`install` replaces that function with one that sets ``SO_REUSEADDR``
only (a restart may still bind while old connections sit in TIME_WAIT). The
kernel then refuses the bind atomically whenever any socket listens on the
port — with or without ``SO_REUSEPORT`` — so there is no check-then-bind
race. The failure carries the kernel's reason; the node turns it into a
:class:`~agentp2p.errors.ListenError`.
"""

from __future__ import annotations

import errno
import socket as stdlib_socket

import trio

_INSTALLED = "_agentp2p_exclusive"


def bind_error_reason(exc: OSError) -> str:
    """What to tell an operator whose bind failed (TCP and UDP listeners,
    the control API)."""
    return "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))


async def open_exclusive_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """``_open_reuseport_listeners`` without ``SO_REUSEPORT``: the same targets
    (all IPv4 and IPv6 interfaces for ``host=None``), every bind must succeed."""
    from libp2p.transport.exceptions import OpenConnectionError

    if host is None:
        targets = [(trio.socket.AF_INET, "0.0.0.0"), (trio.socket.AF_INET6, "::")]
    elif ":" in host:
        targets = [(trio.socket.AF_INET6, host)]
    else:
        targets = [(trio.socket.AF_INET, host)]
    listeners: list[trio.SocketListener] = []
    try:
        for family, ip in targets:
            try:
                sock = trio.socket.socket(family, stdlib_socket.SOCK_STREAM)
            except OSError:
                if host is None and family == trio.socket.AF_INET6:
                    continue  # no IPv6 on this machine: IPv4 only, as the library does
                raise
            try:
                sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
                if family == trio.socket.AF_INET6:
                    sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 1)
                await sock.bind((ip, port))
                sock.listen(128)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except OSError as exc:
        for listener in listeners:
            await listener.aclose()
        raise OpenConnectionError(f"Failed to listen on {host}:{port}: {bind_error_reason(exc)}") from exc
    return listeners


def install() -> None:
    """Make py-libp2p's TCP transport open exclusive listeners (idempotent, process-wide)."""
    from libp2p.transport.tcp import tcp

    if getattr(tcp._open_reuseport_listeners, _INSTALLED, False):
        return
    setattr(open_exclusive_listeners, _INSTALLED, True)
    tcp._open_reuseport_listeners = open_exclusive_listeners  # type: ignore[assignment]
