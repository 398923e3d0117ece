"""A QUIC connection's close, and its end, that always finish.

py-libp2p 0.8.1's ``QUICConnection.close()`` marks the connection closed
first, then closes its streams (up to ``CONNECTION_CLOSE_TIMEOUT``, 10 s),
and only then tells the swarm (``on_close``). A caller whose deadline lands
in between — the swarm's connection trimmer allows 5 s — leaves it marked
closed but still in the swarm, and every later ``close()`` returns at once:
an outside attack kept 166 such connections for 12 minutes and filled the
300-connection limit (honest dials refused, TCP included).

:func:`bounded_close` runs the library's close shielded from the caller's
cancellation, under a bound of its own (:data:`CLOSE_BOUND`); the stream
phase inside is bounded by the transport config (1 s,
:func:`agentp2p.network.quic.transport_config`). Whatever the connection's
streams still hold is then given back to the resource manager.

The other way a connection ends — the peer closes it, or it times out idle —
has the same flaw: aioquic reports it from a timer that py-libp2p runs in
the connection's own event-loop task, and the handler cancels that task's
scope before it tells the listener, so the listener kept every such
connection in its tables (~107 KB each: an attacker connecting and closing
at the handshake budget would leak ~10 MB/s). :func:`bounded_termination`
shields that handler the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

#: The longest a close may take (the stream phase is 1 s; the rest sends one
#: datagram and updates tables).
CLOSE_BOUND = 5.0


def bounded_close(close: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """Wrap ``QUICConnection.close``."""

    async def _close(self: Any) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_BOUND):
            await close(self)
        _closed(self)

    return _close


def bounded_termination(handle: Callable[[Any, Any], Awaitable[None]]) -> Callable[[Any, Any], Awaitable[None]]:
    """Wrap ``QUICConnection._handle_connection_terminated``."""

    async def _handle_connection_terminated(self: Any, event: Any) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_BOUND):
            await handle(self, event)
        _closed(self)

    return _handle_connection_terminated


def _closed(connection: Any) -> None:
    """After a close or an end, bounded or not: whatever the streams still
    hold goes back to the resource manager (a stream the close did not reach
    is dropped with the connection), and waiters on the close (our inbound
    gate) are released even if the library's close ran out of time."""
    reservation = getattr(connection, "_agentp2p_reservation", None)
    if reservation is not None:
        reservation.close()
    event = getattr(connection, "_closed_event", None)
    if isinstance(event, trio.Event):
        event.set()
