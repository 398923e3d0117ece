"""Direct connections made on purpose: TCP hole punching and reversal.

A relayed connection (network/relayed.py) works, but every byte crosses a
third machine. DCUtR (protocol/holepunch/) upgrades it; this module is the
part that touches sockets:

* :class:`PunchPort` — a local TCP port chosen *before* the exchange, so
  our candidate address (``our public IP``:``port``) can be sent to the
  peer, and the SYNs we later send leave from that very port. A NAT that
  keeps the source port (Linux's MASQUERADE, many home routers: "cone" in
  our NAT lab) then maps it to the address the peer was told. We do not
  dial from the listen port as go-libp2p does: that needs ``SO_REUSEPORT``
  on the listener, which lets another process share the port
  (network/listen.py). The cost: a NAT that keeps one mapping per local
  port but *changes the port number* defeats us, while go-libp2p, which
  makes every dial from its listen port, learns that mapping from
  identify and punches it.
* :func:`punch` — connect from that port to each of the peer's addresses
  at once while the peer does the same (a TCP simultaneous open: both
  sockets see their ``connect`` succeed), then run the security handshake
  in the role DCUtR assigns (``as_client``) and register the connection.
* :func:`dial_fresh` — an ordinary dial that opens a *new* connection even
  though one (the relayed one) exists (the dialer would just reuse it),
  to every address at once, the first to answer kept.
* :func:`retire_relayed` — once a direct connection is up, the relayed ones
  to that peer are closed after a grace period (new streams already prefer
  the direct one: py-libp2p's default picks direct connections first).

While a direct connection is being added the peer is protected in the
swarm: with one connection per peer it trims the surplus as soon as a
connection is added — never one younger than its grace period (20 s), but
a relayed connection older than that would go at once, streams and all,
instead of after our own grace period.

A peer names the addresses we dial, so each is dialed once per round: a
refused connect (a RST, as from a port with no socket yet on loopback) is
retried at most twice. The kernel's own SYN retransmits do the rest.
"""

from __future__ import annotations

import contextlib
import errno
import socket as stdlib_socket
from typing import Any

import trio
from libp2p.connection_types import ConnectionType
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.network.addresses import tcp_multiaddr
from agentp2p.network.closing import is_open
from agentp2p.network.multistream import wait_accepted
from agentp2p.network.relayed import relayed_connections
from agentp2p.network.streams import close_quietly

__all__ = ["DirectConnector", "PunchError", "PunchPort", "dial_fresh", "direct_connections", "punch", "retire_relayed"]

#: A refused connect (the peer's socket was not there yet) is retried after
#: these delays, then given up.
_REFUSED_RETRIES = (0.1, 0.3)
_PROTECT_TAG = "agentp2p-direct-upgrade"


class PunchError(Exception):
    """No direct connection came of the attempt."""


def _maddr(ip: str, port: int, peer: ID | None = None) -> Multiaddr:
    addr = tcp_multiaddr(ip, port)
    return addr if peer is None else Multiaddr(f"{addr}/p2p/{peer}")


class PunchPort:
    """A local TCP port for one punch: bound now, dialed from later.

    Every socket bound to it sets ``SO_REUSEADDR``, so one socket per peer
    address can share the port (none of them listens; a listener would
    refuse the company). ``close`` releases whatever was not used.
    """

    def __init__(self, ipv6: bool = False) -> None:
        self.family = stdlib_socket.AF_INET6 if ipv6 else stdlib_socket.AF_INET
        self._wildcard = "::" if ipv6 else "0.0.0.0"
        first = self._bound(0)
        self.port: int = first.getsockname()[1]
        self._spare: list[stdlib_socket.socket] = [first]

    def _bound(self, port: int) -> stdlib_socket.socket:
        sock = stdlib_socket.socket(self.family, stdlib_socket.SOCK_STREAM)
        try:
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
            if self.family == stdlib_socket.AF_INET6:
                sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 1)
            sock.bind((self._wildcard, port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def take(self) -> Any:
        """A trio socket bound to :attr:`port` (the caller owns it)."""
        sock = self._spare.pop() if self._spare else self._bound(self.port)
        return trio.socket.from_stdlib_socket(sock)

    def close(self) -> None:
        for sock in self._spare:
            sock.close()
        self._spare.clear()


def direct_connections(host: Any, peer: ID) -> list[Any]:
    """Our open connections to ``peer`` that do not run over a relay."""
    return [c for c in host.get_network().get_connections(peer)
            if is_open(c) and c.get_connection_type() is not ConnectionType.RELAYED]


async def _connect_from(port: PunchPort, ip: str, remote_port: int) -> Any:
    """A connected trio socket from ``port`` to ``(ip, remote_port)``; a refusal is
    retried a bounded number of times (the peer's socket may not exist yet)."""
    for delay in (*_REFUSED_RETRIES, None):
        sock = port.take()
        try:
            await sock.connect((ip, remote_port))
            return sock
        except BaseException as exc:
            sock.close()
            if delay is None or not isinstance(exc, OSError) or exc.errno not in (errno.ECONNREFUSED,
                                                                                   errno.ECONNRESET):
                raise
        await trio.sleep(delay)
    raise AssertionError("unreachable")


async def _upgrade(host: Any, peer: ID, sock: Any, addr: Multiaddr, as_client: bool) -> Any:
    """Security and muxer over a connected socket, in our DCUtR role; the
    connection joins the swarm (returned: the swarm's connection as the
    client, the muxed one as the server). Raises if the other end is not ``peer``."""
    swarm = host.get_network()
    raw = RawConnection(TrioTCPStream(trio.SocketStream(sock)), as_client, ConnectionType.DIRECT, addresses=[addr])
    try:
        if as_client:
            return await swarm.upgrade_outbound_raw_conn(raw, peer)  # Noise checks the key is peer's
        # As the server, the peer ID is checked once the connection is in the
        # swarm (as for any inbound one: the swarm's inbound upgrade registers
        # it), then a wrong peer is closed.
        muxed = await swarm.upgrade_inbound_raw_conn(raw, addr)
    except BaseException:
        # The library closes the socket only on a security failure; a
        # cancelled or timed-out handshake would leave it to the GC.
        await close_quietly(raw)
        raise
    if getattr(muxed, "peer_id", None) != peer:
        await close_quietly(muxed)
        raise PunchError(f"{addr} answered as {getattr(muxed, 'peer_id', None)}, not {peer}")
    return muxed


async def punch(host: Any, peer: ID, port: PunchPort, addrs: list[tuple[str, int]], *,
                as_client: bool, timeout: float) -> None:
    """Dial every one of ``addrs`` from ``port`` at once; the first that connects
    is upgraded and kept, the others are dropped. :class:`PunchError` if none
    gives a direct connection within ``timeout``."""
    errors: list[str] = []
    upgraded: list[Any] = []
    won = trio.Event()

    async def one(ip: str, remote_port: int, cancel: trio.CancelScope) -> None:
        try:
            sock = await _connect_from(port, ip, remote_port)
        except OSError as exc:
            errors.append(f"{ip}:{remote_port}: {exc.strerror or exc}")
            return
        if won.is_set():
            sock.close()
            return
        won.set()
        try:
            upgraded.append(await _upgrade(host, peer, sock, _maddr(ip, remote_port), as_client))
        except Exception as exc:  # noqa: BLE001 — the handshake failed: report it
            errors.append(f"{ip}:{remote_port}: handshake: {type(exc).__name__}: {exc}")
        finally:
            cancel.cancel()

    await _race(host, peer, addrs, one, timeout, errors, upgraded)


async def dial_fresh(host: Any, peer: ID, addrs: list[tuple[str, int]], timeout: float) -> None:
    """A new direct connection to ``peer`` (as the client), even while a
    relayed one is open: every one of ``addrs`` at once, the first to finish
    its handshake kept. :class:`PunchError` if none gives one."""
    swarm = host.get_network()
    errors: list[str] = []
    upgraded: list[Any] = []

    async def one(ip: str, remote_port: int, done: trio.CancelScope) -> None:
        addr = _maddr(ip, remote_port, peer)
        transport = swarm.transport_manager.transport_for_dialing(addr)
        if transport is None:
            return
        try:
            raw = await transport.dial(addr)
        except Exception as exc:  # noqa: BLE001 — another address may answer
            errors.append(f"{ip}:{remote_port}: {type(exc).__name__}: {exc}")
            return
        try:
            upgraded.append(await swarm.upgrade_outbound_raw_conn(raw, peer))
        except BaseException as exc:
            await close_quietly(raw)
            if not isinstance(exc, Exception):
                raise
            errors.append(f"{ip}:{remote_port}: {type(exc).__name__}: {exc}")
            return
        done.cancel()

    await _race(host, peer, addrs, one, timeout, errors, upgraded)


async def _race(host: Any, peer: ID, addrs: list[tuple[str, int]], one: Any, timeout: float,
                errors: list[str], upgraded: list[Any]) -> None:
    """Run ``one(ip, port, cancel_scope)`` for every address at once (the
    winner cancels the rest; each appends the connection it upgraded to
    ``upgraded``), the peer protected in the swarm meanwhile;
    :class:`PunchError` with ``errors`` unless a direct connection is up."""
    _protect(host, peer, True)
    accepted = False
    try:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for ip, remote_port in addrs:
                    nursery.start_soon(one, ip, remote_port, nursery.cancel_scope)
            # As the dialer, our muxer proposal rode without waiting
            # (network/multistream.py): the punch counts once it is accepted.
            # The ones upgraded here too: a refused one may be out of the
            # swarm's table already (its close ran), or closed in it.
            for conn in dict.fromkeys([*upgraded, *direct_connections(host, peer)]):
                why = await wait_accepted(getattr(conn, "muxed_conn", conn))
                if why is not None:
                    # Still in the swarm's table for a moment: not a success.
                    await close_quietly(conn)
                    raise PunchError(f"refused after the handshake: {why}")
            accepted = True
    finally:
        _protect(host, peer, False)
    if direct_connections(host, peer) and not accepted:
        for conn in direct_connections(host, peer):
            await close_quietly(conn)
        raise PunchError(f"the peer did not accept the connection within {timeout:g}s")
    if not direct_connections(host, peer):
        raise PunchError("; ".join(errors) or f"no answer within {timeout:g}s")


async def retire_relayed(host: Any, peer: ID, grace: float) -> int:
    """After ``grace`` seconds, close the relayed connections to ``peer`` if a
    direct one is still open; how many were closed."""
    await trio.sleep(grace)
    if not direct_connections(host, peer):
        return 0
    closed = 0
    for conn in relayed_connections(host, peer):
        with trio.move_on_after(5), contextlib.suppress(Exception):
            await conn.close()
            closed += 1
    return closed


def _protect(host: Any, peer: ID, on: bool) -> None:
    swarm = host.get_network()
    with contextlib.suppress(Exception):
        if on:
            swarm.protect(peer, _PROTECT_TAG)
        else:
            swarm.unprotect(peer, _PROTECT_TAG)


def _is_inbound(conn: Any) -> bool:
    direction = getattr(conn, "direction", None)
    if direction is not None and getattr(direction, "name", "").upper() in ("INBOUND", "OUTBOUND"):
        return direction.name.upper() == "INBOUND"
    return getattr(conn.muxed_conn, "is_initiator_value", True) is False


class DirectConnector:
    """What the hole-punch service may do to connections (the contract's
    ``direct``): the functions above bound to the node's host and dialer."""

    def __init__(self, host: Any, dialer: Any) -> None:
        self._host = host
        self._dialer = dialer

    def has_direct(self, peer: ID) -> bool:
        return bool(direct_connections(self._host, peer))

    def relayed_inbound(self, peer: ID) -> bool:
        """Connected to ``peer`` only by relayed connections, one of which it
        opened to us (we are DCUtR's B for it)."""
        relayed = relayed_connections(self._host, peer)
        return bool(relayed) and not self.has_direct(peer) and any(_is_inbound(c) for c in relayed)

    def relayed_outbound(self, peer: ID) -> bool:
        """Connected to ``peer`` through a relayed connection we opened (DCUtR's A)."""
        return any(not _is_inbound(c) for c in relayed_connections(self._host, peer))

    async def observed_ip(self, peer: ID, timeout: float) -> str | None:
        from agentp2p.network.identify import observed_ip

        return await observed_ip(self._dialer, self._host, peer, timeout)

    def port(self, ipv6: bool = False) -> PunchPort:
        return PunchPort(ipv6)

    async def punch(self, peer: ID, port: PunchPort, addrs: list[tuple[str, int]], *, as_client: bool,
                    timeout: float) -> None:
        await punch(self._host, peer, port, addrs, as_client=as_client, timeout=timeout)

    async def dial_fresh(self, peer: ID, addrs: list[tuple[str, int]], timeout: float) -> None:
        await dial_fresh(self._host, peer, addrs, timeout)

    async def retire_relayed(self, peer: ID, grace: float) -> int:
        return await retire_relayed(self._host, peer, grace)
