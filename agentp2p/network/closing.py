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
takes out the connections that an earlier sweep, at least :data:`GRACE`
seconds before, found closed too (a close that runs is done by then): out
of the table, their streams reset, the socket under the muxer closed, the
notifees told. The lock-out lasts 10-15 s instead of for good.

Not done: a close cut after the library took the connection out of the
table but before it told the notifees (its last 0.1 s) still goes
unreported; the sweep sees only the table. A close still running after
the grace (none measured takes so long) ends when the sweep closes its
socket, and then tells the notifees a second time: ours hear one
disconnect per connection (network/events.py), py-libp2p's own may hear
two. Nor is a close kept from being cut short: shielding the library's
close from its callers was tried and not kept (the sweep alone ends the lock-out and touches less; the first
runs of every form were slow for a reason not found, and the sweep's
were not when run in turn with the code before it: docs/scale.md, "A
member missing for good").
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger("agentp2p.closing")

__all__ = ["Closer", "ClosingStats", "GRACE", "MAX_PER_SWEEP", "SWEEP_INTERVAL", "is_open"]

#: Seconds between sweeps of the swarm's table for connections left closed in it.
SWEEP_INTERVAL = 5.0
#: Seconds a connection may be seen closed in the table before a sweep takes
#: it out: longer than a close that runs (a Yamux close whose last write
#: stalls takes ~2 s, a QUIC close up to 5 s).
GRACE = 10.0
#: Seconds each forced step (the socket's close, the notifees) may take.
_FORCE_TIMEOUT = 1.0
#: Connections one sweep takes out at most (each may take 3 forced steps).
MAX_PER_SWEEP = 32


@dataclass
class ClosingStats:
    #: Connections found closed in the swarm's table at two sweeps at least
    #: GRACE apart, and taken out.
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

    def __init__(self, network: Any, *, sweep_interval: float = SWEEP_INTERVAL, grace: float = GRACE) -> None:
        if not sweep_interval > 0 or grace < 0:
            raise ValueError("sweep_interval must be > 0 and grace >= 0")
        self._network = network
        self.sweep_interval = sweep_interval
        self.grace = grace
        self.stats = ClosingStats()
        #: The connections the sweeps found closed: id -> (the connection, held
        #: so that ids are not reused; when a sweep first saw it closed).
        self._seen: dict[int, tuple[Any, float]] = {}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep every ``sweep_interval`` seconds. A sweep that fails is logged
        and the next one runs: this task shares the node's nursery."""
        task_status.started()
        while True:
            await trio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 — never end the node over a sweep
                log.warning("sweeping the swarm's table for closed connections failed: %r", exc)

    async def sweep(self) -> int:
        """Take out the connections an earlier sweep, at least ``grace`` ago,
        found closed too, at most :data:`MAX_PER_SWEEP` (the rest at the next);
        how many."""
        now = trio.current_time()
        closed = {id(c): c for conns in list(self._network.connections.values()) for c in conns if not is_open(c)}
        seen = {key: self._seen.get(key, (c, now)) for key, c in closed.items()}
        due = [key for key, (_, first) in seen.items() if key in self._seen and now - first >= self.grace]
        due = due[:MAX_PER_SWEEP]
        for key in due:
            del seen[key]
        self._seen = seen
        count = 0
        for key in due:
            conn = closed[key]
            await trio.lowlevel.checkpoint()  # each taken out is shielded: a cancel lands between them
            peer = getattr(getattr(conn, "muxed_conn", None), "peer_id", None)
            if not any(c is conn for c in self._network.connections.get(peer, ())):
                continue  # its close finished meanwhile
            count += 1
            self.stats.forgotten += 1
            log.debug("a closed connection to %s was still in the swarm's table: taking it out", peer)
            await self._forget(conn)
        return count

    async def _forget(self, conn: Any) -> None:
        """What the library's close does after its muxer's: the table, the socket, the notifees."""
        network = self._network
        with contextlib.suppress(Exception):
            network.remove_conn(conn)  # idempotent: filters by identity
        with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
            for stream in list(conn.get_streams()):  # as the library's cleanup: their slots back
                with contextlib.suppress(Exception):
                    await stream.reset()
        muxed = getattr(conn, "muxed_conn", None)
        if muxed is not None and not getattr(muxed, "is_closed", False):
            # Under Yamux, the secured connection: its close waits on neither
            # the muxer's lock nor a GO_AWAY the peer will not read, and the
            # muxer's reader then ends the muxer. QUIC has no layer under it
            # (its close is bounded by its own wrapper, 5 s: quic/closing.py).
            lower = getattr(muxed, "secured_conn", None) or muxed
            with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
                with contextlib.suppress(Exception):
                    await lower.close()
        if not getattr(conn, "_agentp2p_told", False):
            with trio.CancelScope(shield=True), trio.move_on_after(_FORCE_TIMEOUT):
                with contextlib.suppress(Exception):
                    await network.notify_disconnected(conn)
