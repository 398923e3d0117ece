"""Connections left closed in the swarm's table: found and taken out.

py-libp2p 0.8.1's ``SwarmConn.close`` marks the connection closed first,
then closes its muxer, and only after that takes it out of the swarm's
table and tells the notifees. A close cancelled in between — by a caller's
deadline: the connection manager's round has one, so do the inbound gate,
the hole punch and the node's shutdown — leaves a connection that says it is
closed in the table for good, over a socket still open:

* every stream to that peer fails with "No valid connections available"
  (``Swarm.new_stream`` finds the entry, so it does not dial, then filters
  it out), and our dialer, which counts the entry as a connection, does not
  dial either;
* no "disconnected" event is ever sent, so every service still counts the
  peer as connected; the peer, whose end is open, does too.

In a 100-node benchmark (2026-12-07) two nodes each lacked one member of
their SWIM view for 600 s and more; SWIM's only failed stream opens in that
time were candidate pings failing with exactly that error.

:class:`Closer` sweeps the table every :data:`SWEEP_INTERVAL` seconds and
takes out the connections that said they were closed at the sweep before
as well (a close that runs takes a fraction of a second; one still listed
a whole interval later was cut short): out of the table, the socket under
the muxer closed, the notifees told. The lock-out lasts one to two
intervals instead of for good.

Not done: closes that cannot be cut short. Shielding the library's close
from its callers (and the dialer waiting for closes under way instead of
counting a closing connection as one) was tried the same day: in two
100-node devnets the records were out 178 s and more than 380 s after the
network was up, against 11 s on the code before (one run, and 6-10 s in
three runs the day before), with more SWIM suspicions and 19 times the
inbound handshakes timed out; why was not found.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger("agentp2p.closing")

__all__ = ["Closer", "ClosingStats", "SWEEP_INTERVAL", "is_open"]

#: Seconds between sweeps of the swarm's table for connections left closed in it.
SWEEP_INTERVAL = 5.0
#: Seconds each forced step (the socket's close, the notifees) may take.
_FORCE_TIMEOUT = 1.0


@dataclass
class ClosingStats:
    #: Connections found closed in the swarm's table at two sweeps in a row,
    #: and taken out.
    forgotten: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def is_open(conn: Any) -> bool:
    """Whether a connection in the swarm's table is usable (not closed)."""
    try:
        return not conn.is_closed
    except Exception:  # noqa: BLE001 — a connection that cannot say is taken as open, as before
        return True


class Closer:
    """Sweeps one swarm's table for connections left closed in it (the module doc says why)."""

    def __init__(self, network: Any, *, sweep_interval: float = SWEEP_INTERVAL) -> None:
        if not sweep_interval > 0:
            raise ValueError("sweep_interval must be > 0")
        self._network = network
        self.sweep_interval = sweep_interval
        self.stats = ClosingStats()
        #: The connections the last sweep found closed (held, so ids are not reused).
        self._seen: dict[int, Any] = {}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep every ``sweep_interval`` seconds."""
        task_status.started()
        while True:
            await trio.sleep(self.sweep_interval)
            await self.sweep()

    async def sweep(self) -> int:
        """Take out the connections closed at this sweep and the one before; how many."""
        closed = {id(c): c for conns in list(self._network.connections.values()) for c in conns if not is_open(c)}
        due = [c for key, c in closed.items() if key in self._seen]
        self._seen = {key: c for key, c in closed.items() if key not in self._seen}
        for conn in due:
            self.stats.forgotten += 1
            log.debug("a closed connection to %s was still in the swarm's table: taking it out",
                      getattr(conn.muxed_conn, "peer_id", "?"))
            await self._forget(conn)
        return len(due)

    async def _forget(self, conn: Any) -> None:
        """What the library's close does after its muxer's: the table, the socket, the notifees."""
        network = self._network
        with contextlib.suppress(Exception):
            network.remove_conn(conn)  # idempotent: filters by identity
        muxed = getattr(conn, "muxed_conn", None)
        if muxed is not None and not getattr(muxed, "is_closed", False):
            # Under Yamux, the secured connection: its close waits on neither
            # the muxer's lock nor a GO_AWAY the peer will not read, and the
            # muxer's reader then ends the muxer. QUIC has no layer under it.
            lower = getattr(muxed, "secured_conn", None) or muxed
            with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
                with contextlib.suppress(Exception):
                    await lower.close()
        if not getattr(conn, "_agentp2p_told", False):
            with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
                with contextlib.suppress(Exception):
                    await network.notify_disconnected(conn)
