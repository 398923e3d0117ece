"""QUIC flow-control credit for bytes the application has *read*.

aioquic 1.7.2 raises its receive windows when data *arrives*: once the
highest offset received passes half of a window it doubles that window
(``_write_stream_limits``, ``_write_connection_limits``). It keeps no buffer
of its own (data leaves it as events), so nothing ties the sender's pace to
the reader's: a reader that stalls lets the sender run on, and py-libp2p's
stream, which caps its buffer at 2 MiB, dropped the excess (docs/reachability.md,
"QUIC").

:class:`ReadCredit` grants credit the way TCP and our Yamux do: the peer may
send ``window`` bytes beyond what the local reader has *released* (read, or
discarded with its stream). What one connection can make us hold is then
its connection window, and one stream its stream window. The windows are
the configuration's ``max_data`` and ``max_stream_data``; an update goes out
once half a window has been released, not on every read.

It overrides two private methods of aioquic, whose version is pinned in
``pyproject.toml``; ``tests/network/quic/test_quic_credit.py`` fails if
their behaviour changes under us.
"""

from __future__ import annotations

from typing import Any

from aioquic.quic.connection import QuicConnection

_RELEASED = "_agentp2p_released"  # attribute on aioquic's per-stream object


class ReadCredit:
    """Mixin for an aioquic ``QuicConnection``: credit follows the reader."""

    _agentp2p_released_total: int = 0

    def release(self, stream_id: int, n: int) -> bool:
        """``n`` bytes of ``stream_id`` were read or discarded; True when a
        window update is now due (the caller wakes its sender)."""
        self._agentp2p_released_total += n
        conn: Any = self
        stream = conn._streams.get(stream_id)
        due = self._agentp2p_released_total + conn._configuration.max_data - conn._local_max_data.value
        if stream is not None:
            released = getattr(stream, _RELEASED, 0) + n
            setattr(stream, _RELEASED, released)
            if stream.max_stream_data_local:
                stream_due = released + conn._configuration.max_stream_data - stream.max_stream_data_local
                if stream_due >= conn._configuration.max_stream_data // 2:
                    return True
        return due >= conn._configuration.max_data // 2

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
        window = conn._configuration.max_data
        limit = conn._local_max_data
        target = self._agentp2p_released_total + window
        if target - limit.value >= window // 2:
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
