"""Closing a connection so that the swarm forgets it: bounded, never half done.

py-libp2p 0.8.1's ``SwarmConn.close`` marks the connection closed first,
then closes its muxer (Yamux sends GO_AWAY under a lock: a peer that stops
reading stalls it), and only after that takes it out of the swarm's table
and tells the notifees. A close cancelled in between — by any caller's
deadline: the connection manager's round had one, the inbound gate and the
hole punch have theirs — leaves a connection that says it is closed in the
table for good, over a socket still open:

* every stream to that peer fails with "No valid connections available"
  (``Swarm.new_stream`` finds the entry, so it does not dial, then filters
  it out), and our dialer, which saw the entry, did not dial either;
* no "disconnected" event is ever sent, so every service still counts the
  peer as connected; the peer, whose end is open, does too.

In a 100-node benchmark (2026-12-07) two nodes each lacked one member of
their SWIM view for 600 s and more; SWIM's only failed stream opens in that
time were candidate pings failing with exactly that error. The QUIC
connection's close had the same flaw (quic/closing.py). Hence:

* :func:`install` wraps ``SwarmConn.close`` (once per process, as the QUIC
  one is wrapped): the library's close runs shielded from its caller's
  cancellation, until the caller's deadline or :data:`CLOSE_TIMEOUT`,
  whichever comes first; if it did not finish, what it left undone is done
  by force — out of the table, the socket under the muxer closed, the
  notifees told (unless they were). A second close while one is under way
  returns at once, as the library's does.
* :meth:`Closer.forget_closed` takes out of the table the connections that
  say they are closed with no close under way (none should be left now;
  counted in case a library path we did not foresee leaves one); the dialer
  calls it for a peer before it decides whether to dial, after waiting for
  a close under way. :meth:`Closer.run` sweeps the whole table every
  :data:`SWEEP_INTERVAL` seconds the same way.
* :class:`agentp2p.network.events.ConnectionEvents` passes one
  "disconnected" per connection on, however many it is told.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.peer.id import ID

log = logging.getLogger("agentp2p.closing")

__all__ = ["Closer", "ClosingStats", "CLOSE_TIMEOUT", "LIBRARY", "SWEEP_INTERVAL", "install", "is_open"]

#: Seconds the library's close may take before what it left undone is done by force.
CLOSE_TIMEOUT = 5.0
#: Seconds between sweeps of the swarm's table for connections left closed in it.
SWEEP_INTERVAL = 5.0
#: Seconds each forced step (the socket's close, the notifees) may take.
_FORCE_TIMEOUT = 1.0
#: The library's own methods, before :func:`install` wrapped them.
LIBRARY: dict[str, Callable[..., Awaitable[None]]] = {}


@dataclass
class ClosingStats:
    #: Closes whose library part did not finish within their bound (the
    #: caller's deadline or CLOSE_TIMEOUT): finished by force.
    forced: int = 0
    #: Connections found closed in the swarm's table with no close under way,
    #: and taken out (forget_closed, the sweep).
    forgotten: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def is_open(conn: Any) -> bool:
    """Whether a connection in the swarm's table is usable (not closed)."""
    try:
        return not conn.is_closed
    except Exception:  # noqa: BLE001 — a connection that cannot say is taken as open, as before
        return True


def install() -> None:
    """Wrap ``SwarmConn.close`` (idempotent; process-wide, like every instance it affects)."""
    if "close" in LIBRARY:
        return
    LIBRARY["close"] = SwarmConn.close
    SwarmConn.close = _bounded_close(LIBRARY["close"])  # type: ignore[method-assign]


def _bounded_close(close: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    async def _close(self: Any) -> None:
        if getattr(self, "_agentp2p_closing", None) is not None or self.is_closed:
            return  # under way or done: the library's second close returns at once too
        done = self._agentp2p_closing = trio.Event()
        # The caller's deadline bounds the library's part (shutdown gives 2 s);
        # a caller cancelled already gets the forced part alone.
        deadline = min(trio.current_time() + CLOSE_TIMEOUT, trio.current_effective_deadline())
        try:
            with trio.CancelScope(shield=True):
                with trio.CancelScope(deadline=deadline) as scope:
                    with contextlib.suppress(Exception):
                        await close(self)
                if scope.cancelled_caught:
                    closer = getattr(self.swarm, "_agentp2p_closer", None)
                    if closer is not None:
                        closer.stats.forced += 1
                    log.debug("closing a connection to %s ran out of time: finishing it by force",
                              getattr(self.muxed_conn, "peer_id", "?"))
                    await _force(self.swarm, self)
        finally:
            done.set()

    return _close


def _closing(conn: Any) -> trio.Event | None:
    """The event set when ``conn``'s close (under way or done) has finished; None if none began."""
    event = getattr(conn, "_agentp2p_closing", None)
    return event if isinstance(event, trio.Event) else None


async def _force(network: Any, conn: Any) -> None:
    """What the library's close does after its muxer's: the table, the socket, the notifees."""
    with contextlib.suppress(Exception):
        network.remove_conn(conn)  # idempotent: filters by identity
    muxed = getattr(conn, "muxed_conn", None)
    if muxed is not None and not getattr(muxed, "is_closed", False):
        # Under Yamux, the secured connection: its close waits on neither the
        # muxer's lock nor a GO_AWAY the peer will not read, and the muxer's
        # reader then ends the muxer. QUIC has no layer under it.
        lower = getattr(muxed, "secured_conn", None) or muxed
        with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
            with contextlib.suppress(Exception):
                await lower.close()
    if not getattr(conn, "_agentp2p_told", False):
        with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
            with contextlib.suppress(Exception):
                await network.notify_disconnected(conn)


class Closer:
    """Closes connections of one swarm and forgets the ones left closed in its
    table (the module doc says why); holds the counts."""

    def __init__(self, network: Any, *, sweep_interval: float = SWEEP_INTERVAL) -> None:
        if not sweep_interval > 0:
            raise ValueError("sweep_interval must be > 0")
        install()
        self._network = network
        network._agentp2p_closer = self  # where the wrapped close counts what it forced
        self.sweep_interval = sweep_interval
        self.stats = ClosingStats()

    async def close_peer(self, peer: ID) -> None:
        """Close the connections to ``peer`` open now (only those: one the peer
        opens meanwhile stays, see Node._close_connections), each bounded."""
        conns = list(self._network.get_connections(peer))
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(conn.close)

    async def forget_closed(self, peer: ID) -> int:
        """Before a dial to ``peer``: wait for its connections' closes under
        way (each bounded), then take out of the table the closed ones left
        there with none under way. Returns how many were taken out."""
        for conn in [c for c in self._network.get_connections(peer) if not is_open(c)]:
            event = _closing(conn)
            if event is not None:
                await event.wait()
        return await self._forget([c for c in self._network.get_connections(peer) if not is_open(c)])

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep the table every ``sweep_interval`` for connections left in it closed."""
        task_status.started()
        while True:
            await trio.sleep(self.sweep_interval)
            await self.sweep()

    async def sweep(self) -> int:
        """Take out of the table every connection that says it is closed with
        no close under way. Returns how many."""
        return await self._forget([c for conns in list(self._network.connections.values())
                                   for c in conns if not is_open(c)])

    async def _forget(self, closed: list[Any]) -> int:
        stale = [c for c in closed if (e := _closing(c)) is None or e.is_set()]
        for conn in stale:
            self.stats.forgotten += 1
            log.debug("a closed connection to %s was still in the swarm's table: taking it out",
                      getattr(conn.muxed_conn, "peer_id", "?"))
            await _force(self._network, conn)
        return len(stale)
