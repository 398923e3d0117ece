"""Our inbound connection path, in place of ``Swarm._handle_inbound_connection``.

py-libp2p 0.8.1 hazards this replaces:

* **Permanent lockout.** The library takes a slot of a capacity limiter
  (``max_connections - min_connections``) for each inbound socket and, once
  the connection is up, holds it until the *swarm* shuts down
  (``await self.manager.wait_finished()``), not until the connection
  closes. After that many inbound connections in the node's lifetime,
  every inbound dial is refused at once.
* **Silent-socket flood.** A socket that connects and says nothing holds a
  slot for the whole upgrade timeout (10 s); a few hundred of them, kept
  up, make most honest dials fail.

:class:`InboundGate` handles each accepted socket:

1. per-IP admission (``ResourceManager.admit_inbound_socket``) and the
   swarm's own allow/deny list;
2. a bounded table of pending handshakes (``max_pending_handshakes``):
   when it is full, the oldest pending socket that has not sent a byte is
   closed to make room (the oldest of all if every one has spoken), and no
   handshake may take longer than ``handshake_timeout``;
3. the swarm's own ``upgrade_inbound_raw_conn`` (Noise, muxer, ``add_conn``,
   so the library's ``max_connections`` checks still apply);
4. refusal of banned peers (also checked right after Noise, for both
   directions, by :func:`install_ban_gate`) and
   ``admit_inbound_connection``;
5. it stays alive until *that* connection closes, then releases every slot.

The listener looks ``self._handle_inbound_connection`` up at call time, so
:meth:`InboundGate.install` replaces it on the swarm instance.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio

from libp2p.abc import IMuxedConn
from libp2p.connection_types import ConnectionType
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.transport.exceptions import SecurityUpgradeFailure

from agentp2p.network.resources import ResourceManager
from agentp2p.network.streams import remote_ip
from agentp2p.throttled_log import ThrottledLog

log = logging.getLogger("agentp2p.network.inbound")

IsBanned = Callable[[Any], bool]


class _HeardStream:
    """A transport stream that remembers whether the remote has sent anything.

    It also ends the library's habit of re-reading a closed socket:
    ``read_exactly`` retries an empty read 100 times, so every socket we
    close mid-handshake cost ~170 reads (most of the CPU of a flood). After
    the first end-of-stream, further reads raise ``ConnectionClosedError``.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.heard = False
        self._eof = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read(self, n: int | None = None) -> bytes:
        if self._eof:
            raise ConnectionClosedError("connection closed", transport="tcp")
        data = await self._inner.read(n)
        if data:
            self.heard = True
        elif n != 0:
            self._eof = True
        return data


class _Pending:
    __slots__ = ("scope", "stream", "evicted", "kill")

    def __init__(self, scope: trio.CancelScope, stream: _HeardStream) -> None:
        self.scope = scope
        self.stream = stream
        self.evicted = False
        self.kill = trio.Event()


#: After closing a pending socket, how long its upgrade may take to notice
#: before it is cancelled outright.
_CLOSE_GRACE = 2.0


async def _close_quietly(obj: Any) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        with contextlib.suppress(Exception):
            await obj.close()


class InboundGate:
    """Admission, bounded handshakes and per-connection lifetime for inbound sockets."""

    def __init__(self, swarm: Any, resources: ResourceManager, is_banned: IsBanned | None = None) -> None:
        self._swarm = swarm
        self._rm = resources
        self._is_banned = is_banned or (lambda peer: False)
        # insertion order is age: the first entry is the oldest pending socket
        self._pending: dict[int, _Pending] = {}
        self._next_token = 0
        #: accepted connections still open (closed by :meth:`close`)
        self._live: set[Any] = set()
        self._closing = False
        #: accepted, refused_ip, refused_gate, refused_banned, refused_limit,
        #: evicted, timed_out, failed, closed_after_security (an AutoNAT dial-back), closed,
        #: refused_closing (arrived while the node was stopping)
        self.stats: Counter[str] = Counter()
        self._log = ThrottledLog(log, interval=30.0)

    def install(self) -> None:
        self._swarm._handle_inbound_connection = self.handle

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def handle(self, read_write_closer: Any, maddr: Any) -> None:
        """The swarm listener's per-socket handler (never raises).

        A QUIC connection arrives secured and multiplexed (its TLS handshake
        ran in the listener, bounded by the transport's handshake timeout):
        it gets the same admission, before the library's ``add_conn``."""
        secured = isinstance(read_write_closer, IMuxedConn)
        if self._closing:
            self.stats["refused_closing"] += 1
            await _close_quietly(read_write_closer)
            return
        ip = remote_ip(read_write_closer)
        if not self._rm.admit_inbound_socket(ip):
            self.stats["refused_ip"] += 1
            await _close_quietly(read_write_closer)
            return
        admitted = False
        try:
            remote_maddr = self._swarm._build_remote_multiaddr(read_write_closer)
            if remote_maddr is not None and not await self._swarm.connection_gate.is_allowed(remote_maddr):
                self.stats["refused_gate"] += 1
                await _close_quietly(read_write_closer)
                return
            if self._closing:  # the node began to stop while the gate was asked
                self.stats["refused_closing"] += 1
                await _close_quietly(read_write_closer)
                return
            if self._at_host_limit():
                # The library refuses it (before or after the handshake):
                # tell the node, whose connection manager then trims early.
                self._rm.refused_for_room()
            muxed = read_write_closer if secured else await self._handshake(read_write_closer, maddr)
            if muxed is None:
                return
            if self._closing:  # the node began to stop during the handshake
                self.stats["refused_closing"] += 1
                await (_close_quietly(muxed) if secured else self._close_conn(muxed))
                return
            if not self._admit_peer(muxed.peer_id):
                await (_close_quietly(muxed) if secured else self._close_conn(muxed))
                return
            admitted = True
            if secured:
                try:
                    await self._swarm.add_conn(muxed, direction="inbound")
                except Exception:  # noqa: BLE001 — refused by the swarm's own limits
                    self.stats["failed"] += 1
                    await _close_quietly(muxed)
                    return
            self.stats["accepted"] += 1
            self._live.add(muxed)
            try:
                if self._closing:  # stopped while the swarm added it (QUIC's add_conn awaits)
                    await self._close_conn(muxed)
                await self._wait_closed(muxed)
            finally:
                self._live.discard(muxed)
            self.stats["closed"] += 1
        finally:
            if admitted:
                self._rm.release_inbound_connection()
            self._rm.release_inbound_socket(ip)

    def stop_accepting(self) -> None:
        """The node is stopping: refuse new sockets and stop the handshakes under way.

        Until the listener closes, a peer can still connect (a SWIM probe
        redialing a member that just left, say). Such a connection would
        arrive after the node has closed its connections, and nobody would
        close it: the peer would keep a live-looking connection to a node
        that is gone. Call it before closing the connections; :meth:`close`
        then closes what was accepted. Idempotent.
        """
        self._closing = True
        for entry in list(self._pending.values()):
            entry.kill.set()  # its watchdog closes the socket

    async def close(self) -> None:
        """:meth:`stop_accepting`, then close every accepted connection still open, all at once."""
        self.stop_accepting()
        async with trio.open_nursery() as nursery:
            for muxed in list(self._live):
                nursery.start_soon(self._close_conn, muxed)

    def _at_host_limit(self) -> bool:
        """The host holds ``max_connections`` already (py-libp2p refuses the next)."""
        try:
            return len(self._swarm.get_connections()) >= self._swarm.connection_config.max_connections
        except AttributeError:  # a stand-in swarm (tests) without the library's limits
            return False

    def _admit_peer(self, peer: Any) -> bool:
        """Banned peers and connections past the limit are refused (counted)."""
        if self._is_banned(peer):
            self.stats["refused_banned"] += 1
            return False
        if not self._rm.admit_inbound_connection(peer):
            self.stats["refused_limit"] += 1
            return False
        return True

    async def _handshake(self, read_write_closer: Any, maddr: Any) -> Any:
        """Upgrade within the pending table's bounds; the muxed conn, or None.

        An evicted or overdue handshake is stopped by closing its socket, so
        the library's upgrade fails and cleans up along its own error path.
        (Cancelling it instead skips that clean-up: py-libp2p's own resource
        manager then leaks a connection slot per cancelled handshake.) It is
        cancelled only if it has not noticed within a grace period.
        """
        limits = self._rm.limits
        while len(self._pending) >= limits.max_pending_handshakes:
            self._evict_one()
        heard = _HeardStream(read_write_closer)
        # A relayed pipe (network/relayed.py) says what it is; a socket is direct.
        raw = RawConnection(heard, False, getattr(read_write_closer, "connection_type", ConnectionType.DIRECT),
                            addresses=getattr(read_write_closer, "addresses", None))
        token = self._next_token
        self._next_token += 1
        muxed = None
        timed_out = False
        with trio.CancelScope() as scope:
            entry = _Pending(scope, heard)
            self._pending[token] = entry
            self._rm.pending_handshakes = len(self._pending)

            async def watchdog() -> None:
                nonlocal timed_out
                with trio.move_on_after(limits.handshake_timeout):
                    await entry.kill.wait()
                timed_out = not entry.evicted and not self._closing  # a stop is not a timeout
                await _close_quietly(read_write_closer)
                await trio.sleep(_CLOSE_GRACE)
                scope.cancel()

            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watchdog)
                    try:
                        muxed = await self._swarm.upgrade_inbound_raw_conn(raw, maddr)
                    except Exception as exc:  # noqa: BLE001 — any failed upgrade just ends this socket
                        if timed_out or entry.evicted:
                            pass
                        elif self._closing:  # the node stopped it (stop_accepting)
                            self.stats["refused_closing"] += 1
                        elif "upgrade mux" in str(exc):
                            # Authenticated, then closed before the muxer: what an
                            # AutoNAT dial-back does (it only proves who answers).
                            self.stats["closed_after_security"] += 1
                        else:
                            self.stats["failed"] += 1
                            self._log.info(("failed", remote_ip(read_write_closer)), "inbound handshake failed: %r", exc)
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                self._pending.pop(token, None)
                self._rm.pending_handshakes = len(self._pending)
        if muxed is None or timed_out or entry.evicted:
            if timed_out:
                self.stats["timed_out"] += 1
                self._rm.hit("handshake_timeout", None, f"from {remote_ip(read_write_closer)}")
            if muxed is not None:
                await self._close_conn(muxed)
                return None
            await _close_quietly(raw)
            return None
        return muxed

    def _evict_one(self) -> None:
        """Close the oldest silent pending socket (the oldest of all if none is silent)."""
        token = next((t for t, e in self._pending.items() if not e.stream.heard), None)
        if token is None:
            token = next(iter(self._pending))
        entry = self._pending.pop(token)
        entry.evicted = True
        entry.kill.set()
        self._rm.pending_handshakes = len(self._pending)
        self.stats["evicted"] += 1
        self._rm.hit("pending_handshakes", None, "oldest pending socket closed")

    async def _close_conn(self, muxed: Any) -> None:
        for conn in list(self._swarm.connections.get(muxed.peer_id, ())):
            if getattr(conn, "muxed_conn", None) is muxed:
                await _close_quietly(conn)
                break
        if not getattr(muxed, "is_closed", False):
            # Not in the table, or its close was cut short earlier (py-libp2p
            # marks a connection closed before it has closed it): the muxer.
            await _close_quietly(muxed)

    @staticmethod
    async def _wait_closed(muxed: Any) -> None:
        # Yamux: event_closed; py-libp2p's QUIC connection: _closed_event.
        event = getattr(muxed, "event_closed", None)
        if not isinstance(event, trio.Event):
            event = getattr(muxed, "_closed_event", None)
        if isinstance(event, trio.Event):
            await event.wait()
            return
        while not muxed.is_closed:
            await trio.sleep(0.5)


def install_ban_gate(host: Any, is_banned: IsBanned) -> None:
    """Refuse banned peers right after Noise authenticates them, both directions.

    Wraps the upgrader's ``upgrade_security`` on the host's instance: a
    banned peer never gets a muxer, a ``connected`` event or a stream.
    """
    upgrader = host.get_network().upgrader
    inner = upgrader.upgrade_security
    if getattr(inner, "_agentp2p_ban_gate", False):
        return

    async def upgrade_security(raw_conn: Any, is_initiator: bool, peer_id: Any = None) -> Any:
        secured = await inner(raw_conn, is_initiator, peer_id)
        remote = secured.get_remote_peer()
        if is_banned(remote):
            await _close_quietly(secured)
            raise SecurityUpgradeFailure(f"peer {remote} is banned")
        return secured

    upgrade_security._agentp2p_ban_gate = True  # type: ignore[attr-defined]
    upgrader.upgrade_security = upgrade_security


def inbound_gate(host: Any) -> InboundGate | None:
    """The gate installed on ``host``'s swarm, if any."""
    handler = getattr(host.get_network(), "_handle_inbound_connection", None)
    gate = getattr(handler, "__self__", None)
    return gate if isinstance(gate, InboundGate) else None
