"""Closing a connection so that the swarm forgets it: bounded, never half done.

py-libp2p's ``SwarmConn.close`` marks the connection closed first, then
closes its muxer (Yamux sends GO_AWAY under a lock: a peer that stops
reading stalls it), and only after that takes it out of the swarm's table
and tells the notifees. A close cancelled in between — by a caller's
deadline, as the connection manager's round had — leaves a connection that
says it is closed in the table for good, over a socket still open:

* every stream to that peer fails with "No valid connections available"
  (``Swarm.new_stream`` finds the entry, so it does not dial, then filters
  it out), and our dialer, which saw the entry, did not dial either;
* no "disconnected" event is ever sent, so every service still counts the
  peer as connected; the peer, whose end is open, does too.

In a 100-node benchmark (2026-12-07) two nodes each lacked one member of
their SWIM view for 600 s and more; SWIM's only failed stream opens in that
time were candidate pings failing with exactly that error. Hence, in our
code:

* :meth:`Closer.close` is the one way we close a connection: the graceful
  close gets ``timeout`` seconds, shielded from the caller's cancellation
  (a deadline around it cannot cut it in the middle); if it did not finish,
  the connection is forgotten by force (:meth:`Closer.forget`: out of the
  table, its socket closed, the notifees told).
* :meth:`Closer.forget_closed` takes out of the table every connection that
  says it is closed — the dialer calls it for a peer before it decides
  whether to dial, so a connection left behind by anyone (the library's own
  paths too) cannot lock a peer out.
* :meth:`Closer.run` sweeps the whole table every ``sweep_interval``
  seconds and forgets the connections it found closed the sweep before
  (a close in progress takes a fraction of a second: not raced).

A connection forgotten here whose library close is still under way is
harmless: the library's own removal finds nothing, and its second
"disconnected" is not passed on while the peer has a connection again
(:class:`agentp2p.network.events.ConnectionEvents`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID

log = logging.getLogger("agentp2p.closing")

__all__ = ["Closer", "ClosingStats", "CLOSE_TIMEOUT", "SWEEP_INTERVAL", "is_open"]

#: Seconds a graceful close may take before the connection is forgotten by force.
CLOSE_TIMEOUT = 5.0
#: Seconds between sweeps of the swarm's table for connections left closed in it.
SWEEP_INTERVAL = 5.0
#: Seconds the forced part (the socket's close, the notifees) may take.
_FORCE_TIMEOUT = 1.0


@dataclass
class ClosingStats:
    closes: int = 0  # connections we closed (Closer.close)
    forced: int = 0  # ... whose graceful close did not finish in time
    #: Connections found in the swarm's table after they had closed, and
    #: taken out: by a dial's check (``forget_closed``) or by the sweep.
    forgotten: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed)
    except Exception:  # noqa: BLE001 — a connection that cannot say is not ours to judge
        return False


def is_open(conn: Any) -> bool:
    """Whether a connection in the swarm's table is usable (not closed)."""
    return not _closed(conn)


class Closer:
    """Closes and forgets connections of one swarm (the module doc says why)."""

    def __init__(self, network: Any, *, timeout: float = CLOSE_TIMEOUT,
                 sweep_interval: float = SWEEP_INTERVAL) -> None:
        if timeout <= 0 or sweep_interval <= 0:
            raise ValueError("timeout and sweep_interval must be > 0")
        self._network = network
        self.timeout = timeout
        self.sweep_interval = sweep_interval
        self.stats = ClosingStats()
        #: Connections the last sweep found closed in the table (by identity).
        self._seen_closed: set[int] = set()

    async def close(self, conn: Any) -> None:
        """Close ``conn``; when this returns it is out of the swarm's table and
        the notifees were told. Takes at most ``timeout`` plus a second, even
        if the caller is cancelled meanwhile (then it returns, and the caller's
        cancellation shows at its next checkpoint)."""
        self.stats.closes += 1
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.timeout):
                with contextlib.suppress(Exception):
                    await conn.close()
                return  # the library's close finished: table and notifees done
            self.stats.forced += 1
            log.debug("closing a connection to %s took over %gs: forgetting it",
                      getattr(conn.muxed_conn, "peer_id", "?"), self.timeout)
            await self._force(conn)

    async def close_peer(self, peer: ID) -> None:
        """Close the connections to ``peer`` open now (only those: one the peer
        opens meanwhile stays, see Node._close_connections)."""
        conns = list(self._network.get_connections(peer))
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(self.close, conn)

    async def forget_closed(self, peer: ID | None = None) -> int:
        """Take every connection that says it is closed out of the table (of
        ``peer``, or all), telling the notifees. Returns how many."""
        if peer is None:
            stale = [c for conns in list(self._network.connections.values()) for c in conns if _closed(c)]
        else:
            stale = [c for c in self._network.get_connections(peer) if _closed(c)]
        for conn in stale:
            self.stats.forgotten += 1
            await self._force(conn)
        return len(stale)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep the table every ``sweep_interval`` for connections left in it closed."""
        task_status.started()
        while True:
            await trio.sleep(self.sweep_interval)
            await self.sweep()

    async def sweep(self) -> int:
        """One sweep: forget the connections found closed by this sweep and the
        one before (a close in progress is not raced). Returns how many."""
        closed = {id(c): c for conns in list(self._network.connections.values()) for c in conns if _closed(c)}
        due = [c for key, c in closed.items() if key in self._seen_closed]
        self._seen_closed = set(closed) - {id(c) for c in due}
        for conn in due:
            self.stats.forgotten += 1
            log.debug("a closed connection to %s was still in the swarm's table: forgetting it",
                      getattr(conn.muxed_conn, "peer_id", "?"))
            await self._force(conn)
        return len(due)

    async def _force(self, conn: Any) -> None:
        """What the library's close would have done after its muxer's close:
        the table, the socket, the notifees."""
        network = self._network
        with contextlib.suppress(Exception):
            network.remove_conn(conn)  # idempotent: filters by identity
        with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
            muxed = getattr(conn, "muxed_conn", None)
            # Under Yamux, the secured connection: closing it does not wait on
            # the muxer's lock or a GO_AWAY the peer will not read, and its
            # reader then ends the muxer. QUIC has no layer under it.
            lower = getattr(muxed, "secured_conn", None) or muxed
            if lower is not None and not getattr(muxed, "is_closed", False):
                with contextlib.suppress(Exception):
                    await lower.close()
        with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
            with contextlib.suppress(Exception):
                await network.notify_disconnected(conn)
