"""A py-libp2p QUIC stream that loses nothing and gives its credit back.

py-libp2p 0.8.1's ``QUICStream`` loses bytes three ways
(docs/reachability.md, "QUIC"):

* ``handle_data_received`` drops a chunk that would take its buffer past
  ``MAX_STREAM_RECEIVE_BUFFER`` (2 MiB), and the FIN riding on it;
* ``read()`` checks the buffer, lets go of its lock and takes another, so a
  chunk and FIN that land in between are reported as end of stream with
  bytes still buffered;
* a ``read()`` that waits ``STREAM_READ_TIMEOUT`` (30 s) resets the stream,
  so an idle long-lived stream dies.

and two of its state changes strand the peer or the stream: closing the
read side (``close()``, ``reset()``) never tells the peer to stop sending,
and a stream already CLOSED (our FIN sent, the peer's received; or the
peer's STOP_SENDING on one of ours) is never cleaned up by ``close()``;
``read()`` also refuses to read in that state while the peer may still send.

:class:`LosslessQUICStream` buffers everything QUIC delivers — bounded by the
credit :class:`~.credit.ReadCredit` grants, not by a cap that drops — reads
without a gap between the check and the wait, waits as long as its caller
lets it (our protocols put deadlines around reads), sends STOP_SENDING when
it stops reading early (as go-libp2p's ``CloseRead``), is cleaned up once
whatever its state, and tells the connection what it holds and releases.
What it holds is also reserved from the node's resource manager (service
``"quic"``, the peer's share), as our Yamux reserves its buffers: a peer
past its share, or a node past its memory, gets the connection closed
instead of the bytes kept.
"""

from __future__ import annotations

import contextlib

import trio

from libp2p.transport.quic.exceptions import QUICStreamClosedError, QUICStreamResetError
from libp2p.transport.quic.stream import QUICStream, StreamState, _QUICStreamEOF


class LosslessQUICStream(QUICStream):
    """``QUICStream`` with credit-driven buffering and a race-free read."""

    _credit_returned = False
    _fin_received = False

    async def read(self, n: int | None = None) -> bytes:
        """Up to ``n`` bytes (all buffered for None/-1); waits without a
        timeout of its own. Raises EOF only with the buffer empty."""
        while True:
            if self._receive_buffer:
                data = self._extract_data_from_buffer(-1 if n is None else n)
                self._timeline.record_first_data()
                self._release(len(data))
                return data
            if self._state == StreamState.RESET:
                raise QUICStreamResetError(f"Stream {self.stream_id} was reset")
            if self._read_closed:
                if getattr(self._connection, "_agentp2p_refused", False) and not self._fin_received:
                    # Cut off for memory, not ended by the peer: not a clean end.
                    raise QUICStreamResetError(f"Stream {self.stream_id}: connection closed (memory limit)")
                raise _QUICStreamEOF()
            if getattr(self._connection, "_closed", False):
                raise QUICStreamClosedError(f"Stream {self.stream_id}: connection closed")
            # No checkpoint between the checks above and this wait: a chunk
            # cannot slip in unseen (trio runs one task at a time).
            event = self._receive_event
            await event.wait()
            if self._receive_event is event:
                self._receive_event = trio.Event()

    async def handle_data_received(self, data: bytes, end_stream: bool) -> None:
        """Buffer what QUIC delivered (never drop it), then note the FIN.
        Data for a stream nobody will read is not held, so the connection
        credits it back at once."""
        if self._state == StreamState.RESET or self._credit_returned:
            return
        if data:
            if not self._reserve(len(data)):
                return
            self._receive_buffer.extend(data)
            self._timeline.record_first_data()
            hold = getattr(self._connection._quic, "hold", None)
            if hold is not None:
                hold(len(data))
        if end_stream:
            self._fin_received = True
            self._read_closed = True
            self._state = StreamState.CLOSED if self._write_closed else StreamState.READ_CLOSED
        if data or end_stream:
            self._receive_event.set()

    async def close_read(self) -> None:
        if not self._read_closed:
            self._stop_sending()
        await super().close_read()

    async def close(self) -> None:
        if self._state in (StreamState.CLOSED, StreamState.RESET):
            # The library returns here without cleaning up (and, after the
            # peer's STOP_SENDING, with our read side still open); we finish.
            if not self._read_closed:
                self._stop_sending()
                self._read_closed = True
                self._receive_event.set()
            if not self._credit_returned:
                await self._cleanup_resources()
            return
        await super().close()

    async def reset(self, error_code: int = 0) -> None:
        if not self._read_closed:
            self._stop_sending(error_code)
        await super().reset(error_code)

    async def _cleanup_resources(self) -> None:
        # A stream that goes away with unread bytes gives their credit back.
        # The bytes stay readable; reading them later credits nothing twice.
        self._release(len(self._receive_buffer))
        self._credit_returned = True
        await super()._cleanup_resources()

    def _stop_sending(self, error_code: int = 0) -> None:
        """Ask the peer to stop sending on this stream (STOP_SENDING)."""
        with contextlib.suppress(Exception):  # a stream aioquic already finished
            self._connection._quic.stop_stream(self._stream_id, error_code)
            self._connection._signal_activity()

    def _reserve(self, n: int) -> bool:
        """Reserve ``n`` buffered bytes; when refused, close the connection
        (its streams then fail; nothing is dropped silently)."""
        reservation = _reservation(self._connection)
        if reservation is None or reservation.grow(n):
            return True
        nursery = getattr(self._connection, "_nursery", None)
        if not getattr(self._connection, "_agentp2p_refused", False) and nursery is not None:
            self._connection._agentp2p_refused = True  # readers get an error, not a clean end
            nursery.start_soon(self._connection.close)
        return False

    def _release(self, n: int) -> None:
        if n <= 0 or self._credit_returned:
            return
        reservation = _reservation(self._connection)
        if reservation is not None:
            reservation.shrink(n)
        quic = self._connection._quic
        release = getattr(quic, "release", None)
        if release is not None and release(self._stream_id, n):
            self._connection._signal_activity()


#: Attribute of the transport config that carries the node's resource manager
#: (set by :func:`agentp2p.network.quic.transport_config`).
RESOURCES = "agentp2p_resources"


def _reservation(connection: object) -> object | None:
    """The connection's reservation (made on first use), or None without a
    resource manager."""
    reservation = getattr(connection, "_agentp2p_reservation", None)
    if reservation is None:
        transport = getattr(connection, "_transport", None)
        rm = getattr(getattr(transport, "_config", None), RESOURCES, None)
        if rm is None:
            return None
        reservation = rm.reservation(getattr(connection, "_remote_peer_id", None), "quic")
        connection._agentp2p_reservation = reservation  # type: ignore[attr-defined]
    return reservation
