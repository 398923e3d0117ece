"""QUIC flow-control credit for what the application holds, not what arrived.

aioquic 1.7.2 raises its receive windows when data *arrives*: once the
highest offset received passes half of a window it doubles that window
(``_write_stream_limits``, ``_write_connection_limits``). It keeps no buffer
of its own beyond out-of-order data (in-order data leaves it as events), so
nothing ties the sender's pace to the reader's: a reader that stalls lets the
sender run on, and py-libp2p's stream, which capped its buffer at 2 MiB,
dropped the excess (docs/reachability.md, "QUIC").

:class:`ReadCredit` grants credit the way TCP and our Yamux do:

* **a stream** may receive ``max_stream_data`` bytes beyond what its reader
  has released (read, or given up with the stream);
* **the connection** may receive ``max_data`` bytes beyond what is *held*:
  bytes buffered by our streams for a reader (:meth:`hold`, :meth:`release`),
  what aioquic keeps out of order, and what waits in its event queue for
  py-libp2p's event loop (which takes ten events a turn and can lag). Everything else aioquic counted —
  read, discarded with a stream, dropped by py-libp2p for a stream it does
  not know, the unsent tail a peer's reset declares — is credited back, so
  no path can leak the connection's window and stall it.

What one connection can make us hold is its connection window; one stream,
its stream window. Updates go out once half a window is due, not per read.

It overrides two private methods of aioquic, whose version is pinned in
``pyproject.toml``; ``tests/network/quic/test_quic_credit.py`` fails if
their behaviour changes under us.
"""

from __future__ import annotations

from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamDataReceived

_RELEASED = "_agentp2p_released"  # attribute on aioquic's per-stream object


class ReadCredit:
    """Mixin for an aioquic ``QuicConnection``: credit follows the reader."""

    _agentp2p_held: int = 0

    def hold(self, n: int) -> None:
        """``n`` bytes were buffered for a reader."""
        self._agentp2p_held += n

    def release(self, stream_id: int, n: int) -> bool:
        """``n`` held bytes of ``stream_id`` were read or given up; True when a
        window update is now due (the caller wakes its sender)."""
        self._agentp2p_held -= n
        conn: Any = self
        stream = conn._streams.get(stream_id)
        if stream is not None:
            released = getattr(stream, _RELEASED, 0) + n
            setattr(stream, _RELEASED, released)
            window = conn._configuration.max_stream_data
            if stream.max_stream_data_local and released + window - stream.max_stream_data_local >= window // 2:
                return True
        window = conn._configuration.max_data
        return self._connection_target() - conn._local_max_data.value >= window // 2

    def _connection_target(self) -> int:
        conn: Any = self
        held = self._agentp2p_held
        for stream in conn._streams.values():
            receiver = stream.receiver
            if not receiver.is_finished:
                held += len(receiver._buffer)  # out-of-order data aioquic keeps
        for event in conn._events:  # delivered by aioquic, not yet taken by py-libp2p
            if type(event) is StreamDataReceived:
                held += len(event.data)
        return conn._local_max_data.used - held + conn._configuration.max_data

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        conn: Any = self
        window = conn._configuration.max_stream_data
        if stream.max_stream_data_local:
            target = getattr(stream, _RELEASED, 0) + window
            if target - stream.max_stream_data_local >= window // 2:
                stream.max_stream_data_local = target
        # aioquic raises the window when highest_offset passes half of it;
        # hide the offset from that rule for this call only, so the frame it
        # writes carries our value.
        receiver = stream.receiver
        highest = receiver.highest_offset
        receiver.highest_offset = 0
        try:
            super()._write_stream_limits(builder, space, stream)  # type: ignore[misc]
        finally:
            receiver.highest_offset = highest

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        conn: Any = self
        limit = conn._local_max_data
        target = self._connection_target()
        if target - limit.value >= conn._configuration.max_data // 2:
            limit.value = target
        used = limit.used
        limit.used = 0  # as above: aioquic doubles MAX_DATA when used passes half
        try:
            super()._write_connection_limits(builder, space)  # type: ignore[misc]
        finally:
            limit.used = used


def credited(base: type[QuicConnection]) -> type[QuicConnection]:
    """``base`` (aioquic's connection or py-libp2p's server subclass) with
    :class:`ReadCredit`."""
    return type(f"Credited{base.__name__}", (ReadCredit, base), {"__module__": __name__})
