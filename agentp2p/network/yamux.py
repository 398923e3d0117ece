"""Yamux with its flow control enforced.

py-libp2p 0.8.1's Yamux grants each stream a receive window (256 KiB, grown
by auto-tuning) but never holds the peer to it: DATA beyond the window is
appended to the stream's buffer anyway, with one WARNING line per frame
("peer exceeded receive window"). A peer that writes without waiting for
window updates makes us buffer without bound (2.5 GB RSS in 10 s). It also
accepts any number of inbound streams per connection.

:class:`GuardedYamux` is the library's Yamux with three checks added, all
made *before* anything is buffered:

* **window**: every frame header is inspected before the muxer reads the
  body (:class:`_FrameGate` sits between the muxer and the secured
  connection). A DATA frame longer than what is left of the stream's window
  is a protocol violation: GO_AWAY (protocol error), close, offence.
* **memory**: every byte in a stream buffer is reserved from the node's
  resource manager (service ``"yamux"``, the peer's share) and released as
  the reader drains it (:class:`_Buffers`, :class:`_Buffer`). A refused
  reservation is treated like an overrun — the peer is using many streams
  to add up more than its share.
* **streams**: a SYN beyond ``max_streams_per_connection`` inbound streams
  is answered with RST and its frame dropped.

And one repair on the way out: **a frame is written whole or the connection
closes** (:meth:`_FrameGate.write`). Noise spends a nonce when it encrypts a
frame, before the bytes reach the socket; py-libp2p lets the writing task's
cancellation (any caller's timeout) land while the frame waits for socket
space. The frame is then half sent or not sent at all, and the peer fails to
decrypt everything after it ("Failed authentication of message"): the whole
connection dies, with every stream on it. In one instrumented 50-node pub/sub
overload run, 543 connections died so (with 583 socket writes cancelled
part-way); the rest of the ~1,800 closes were their peers' ends and shutdown.

Nothing here logs per frame: violations are counted in
:class:`YamuxGuard` and logged at most once per peer per interval.

The class must be registered under ``/yamux/1.0.0`` *and* the muxer
negotiation must construct it: the library's ``MuxerMultistream.new_conn``
instantiates its own ``Yamux`` for that protocol whatever class is
registered, so :func:`install_guarded_muxer` replaces ``new_conn`` on the
host's upgrader instance.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import trio

from libp2p.io.utils import read_exactly
from libp2p.stream_muxer.yamux.yamux import (
    DEFAULT_WINDOW_SIZE,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER_SIZE,
    PROTOCOL_ID,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
    YamuxStream,
)
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.stream_muxer.exceptions import MuxedStreamError

from agentp2p.network.resources import ResourceManager
from agentp2p.throttled_log import ThrottledLog

log = logging.getLogger("agentp2p.network.yamux")

__all__ = ["GuardedYamux", "YamuxGuard", "YamuxViolation", "install_guarded_muxer", "PROTOCOL_ID"]

SERVICE = "yamux"

#: A frame write that cannot finish in this long means the peer has stopped
#: reading the connection (go's yamux ``ConnectionWriteTimeout``, 10 s): the
#: connection is closed, since half a frame may be on the wire. A frame is at
#: most 64 KiB (plus what the kernel already holds ahead of it).
FRAME_WRITE_TIMEOUT = 10.0
#: Once a connection is closing, its last frames (GO_AWAY) get this long.
CLOSING_WRITE_TIMEOUT = 1.0

#: py-libp2p pings every connection every 30 s, from both ends, to re-measure
#: its RTT (an input of receive-window auto-tuning). On an idle node with
#: ~40 connections those pings and their replies were most of its wake-ups
#: (docs/scale.md "Idle cost"). We measure once when the connection opens,
#: as the library does, then this often.
RTT_REMEASURE = 300.0

#: Offence weights (the penalty box bans at 20 points by default). An
#: overrun cannot happen by accident: two get a peer banned.
WINDOW_OVERRUN_WEIGHT = 10.0
MEMORY_OVERRUN_WEIGHT = 5.0

OffenceHook = Callable[[Any, str, float], None]


class YamuxViolation(Exception):
    """The peer broke Yamux flow control; the connection is being closed."""


class YamuxGuard:
    """What every :class:`GuardedYamux` of one node shares: limits, hooks, counters."""

    def __init__(
        self,
        resources: ResourceManager | None = None,
        on_offence: OffenceHook | None = None,
    ) -> None:
        self.resources = resources or ResourceManager()
        self.on_offence = on_offence
        #: window_overruns, memory_refusals, streams_refused, connections_closed,
        #: writes_shielded (a caller gave up while its frame was on its way; the
        #: frame was finished anyway), write_stalls (a frame did not go out in
        #: FRAME_WRITE_TIMEOUT: connection closed)
        self.stats: Counter[str] = Counter()
        self._log = ThrottledLog(log, interval=30.0)

    @property
    def max_streams(self) -> int:
        return self.resources.limits.max_streams_per_connection

    def violation(self, peer: Any, reason: str, weight: float, detail: str) -> None:
        self.stats["connections_closed"] += 1
        self._log.warning((str(peer), reason), "closing connection to %s: %s (%s)", peer, reason, detail)
        if self.on_offence is not None and peer is not None:
            self.on_offence(peer, f"yamux:{reason}", weight)


class _Buffer(bytearray):
    """One stream's receive buffer; its bytes are reserved while they sit here."""

    def __init__(self, owner: GuardedYamux | None, sid: int, data: Any = b"") -> None:
        super().__init__(data)
        self._owner = owner
        self._sid = sid

    def extend(self, data: Any) -> None:  # type: ignore[override]
        owner = self._owner
        if owner is not None and not owner._admit(self._sid, len(data)):
            return  # dropped: the connection is being closed
        super().extend(data)

    def __delitem__(self, key: Any) -> None:
        before = len(self)
        super().__delitem__(key)
        self._release(before - len(self))

    def clear(self) -> None:
        n = len(self)
        super().clear()
        self._release(n)

    def _release(self, n: int) -> None:
        if n > 0 and self._owner is not None:
            self._owner._reservation.shrink(n)

    def detach(self) -> None:
        """The muxer dropped this buffer: give its reservation back, stop accounting."""
        self._release(len(self))
        self._owner = None


class _Buffers(dict):  # type: ignore[type-arg]
    """``Yamux.stream_buffers`` whose values are :class:`_Buffer`s.

    The library creates buffers by assignment and drops them with ``pop``,
    ``del`` and ``clear``; each of those keeps the reservation exact.
    """

    def __init__(self, owner: GuardedYamux) -> None:
        super().__init__()
        self._owner = owner

    def __setitem__(self, sid: int, buf: Any) -> None:
        old = dict.get(self, sid)
        if isinstance(buf, _Buffer) and buf._owner is self._owner:
            wrapped = buf
        else:
            wrapped = _Buffer(self._owner, sid)
            if buf:
                wrapped.extend(buf)
        if old is not None and old is not wrapped:
            old.detach()
        super().__setitem__(sid, wrapped)

    def __delitem__(self, sid: int) -> None:
        buf = dict.__getitem__(self, sid)
        super().__delitem__(sid)
        buf.detach()

    def pop(self, sid: int, *default: Any) -> Any:  # type: ignore[override]
        if sid in self:
            buf = super().pop(sid)
            buf.detach()
            return buf
        if default:
            return default[0]
        raise KeyError(sid)

    def clear(self) -> None:
        for buf in self.values():
            buf.detach()
        super().clear()

    def setdefault(self, sid: int, default: Any = None) -> Any:  # type: ignore[override]
        if sid not in self:
            self[sid] = default if default is not None else bytearray()
        return dict.__getitem__(self, sid)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for sid, buf in dict(*args, **kwargs).items():
            self[sid] = buf


_PASS, _REFUSE = 0, 1


class _FrameGate:
    """The muxer's view of the secured connection, one frame header ahead.

    Yamux reads a 12-byte header, then (for DATA) exactly ``length`` body
    bytes, then the next header. The gate reads each header itself, lets
    :meth:`GuardedYamux._inspect` judge it *before* the body is read, and
    then hands the header to the muxer. Everything else (writes, close,
    addresses) goes straight to the secured connection.
    """

    def __init__(self, mux: GuardedYamux, inner: Any) -> None:
        self._mux = mux
        self._inner = inner
        self._body_left = 0
        self._held = b""
        #: The cancel scope of the frame being written (its deadline is
        #: shortened when the connection starts closing).
        self.writing: trio.CancelScope | None = None
        #: A frame was cut (stall, or a close cutting it short): refuse the rest.
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read(self, n: int | None = None) -> bytes:
        if self._held:
            return self._hand_out(self._held, n)
        if self._body_left > 0:
            want = self._body_left if n is None else min(n, self._body_left)
            with self._noting_end():
                data = await self._inner.read(want)
            if not data:
                self._mux._note_end()
            self._body_left -= len(data)
            return data
        while True:
            with self._noting_end():
                header = await self._inner.read(HEADER_SIZE)
            if len(header) < HEADER_SIZE:
                self._mux._note_end()
                return header  # end of stream; the muxer reports it
            _version, typ, flags, sid, length = struct.unpack(YAMUX_HEADER_FORMAT, header)
            verdict = await self._mux._inspect(typ, flags, sid, length)
            if verdict == _REFUSE:
                if typ == TYPE_DATA and length > 0:
                    with self._noting_end():
                        await read_exactly(self._inner, length)  # bounded by the window check
                continue
            self._body_left = length if typ == TYPE_DATA else 0
            return self._hand_out(header, n)

    @contextlib.contextmanager
    def _noting_end(self) -> Iterator[None]:
        """A read of the byte stream that fails tells the muxer it ended (see ``_note_end``)."""
        try:
            yield
        except Exception:
            self._mux._note_end()
            raise

    async def write(self, data: bytes) -> None:
        """Write one frame whole, whatever happens to the writing task meanwhile.

        The muxer calls this holding its connection write lock, so frames
        leave in the order Noise numbers them. A caller cancelled here (its
        timeout fired while the socket was full) has its cancellation put
        off until the frame is out: the frame is already encrypted, and
        leaving it half sent, or unsent with its nonce spent, would break
        every stream of the connection. A frame that does not go out in
        ``FRAME_WRITE_TIMEOUT`` closes the connection instead. The price: a
        caller whose timeout fires while the socket is full regains control
        when the frame is out, up to ``FRAME_WRITE_TIMEOUT`` late (a closing
        connection cuts that to ``CLOSING_WRITE_TIMEOUT``).
        """
        mux = self._mux
        if self.broken:
            raise ConnectionClosedError(f"connection to {mux.peer_id} broken off mid-frame")
        if mux.closing:
            with trio.move_on_after(CLOSING_WRITE_TIMEOUT) as scope:
                await self._inner.write(data)
            if scope.cancelled_caught:
                await self._break_off()
                raise ConnectionClosedError(f"connection to {mux.peer_id} closing; frame not written")
            return
        with trio.CancelScope(shield=True, deadline=trio.current_time() + FRAME_WRITE_TIMEOUT) as scope:
            self.writing = scope
            try:
                await self._inner.write(data)
            finally:
                self.writing = None
        if scope.cancelled_caught:
            if mux.closing:  # cut short by _start_closing: not a stall
                await self._break_off()
            else:
                await mux._write_stalled()
            raise ConnectionClosedError(f"no frame written to {mux.peer_id} in time; connection closed")
        if trio.current_effective_deadline() <= trio.current_time():  # cancelled meanwhile
            mux._guard.stats["writes_shielded"] += 1

    async def _break_off(self) -> None:
        """Part of a frame may be on the wire: nothing after it can be read.
        Refuse every later frame at once (no more waits on a full socket)
        and close the socket."""
        self.broken = True
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSING_WRITE_TIMEOUT):
            try:
                await self._inner.close()
            except Exception:  # noqa: BLE001 — already broken: that is the point
                pass

    def _hand_out(self, data: bytes, n: int | None) -> bytes:
        if n is None or n >= len(data):
            self._held = b""
            return data
        self._held = data[n:]
        return data[:n]


#: How often a writer looks at a closed send window: from 2 ms, doubling to
#: 50 ms (the library polls every 10 ms; a window update has no event).
WINDOW_POLL_MIN = 0.002
WINDOW_POLL_MAX = 0.05


class _WholeWriteStream(YamuxStream):
    """A Yamux stream that writes each message whole, or resets, and sends
    window updates as go-yamux does (``_auto_tune_and_send_window_update``).

    Two py-libp2p behaviours corrupt a stream that carries messages bigger
    than one frame (64 KiB):

    * ``YamuxStream.write`` takes its lock per *frame*, so two tasks writing
      to one stream interleave their frames. py-libp2p's gossipsub does
      exactly that — its per-peer queue writer and the pending-message
      flush write to the same stream — and the reader then parses half of
      one message glued to half of another (a DecodeError in a gossipsub
      reader, seen with 256 KiB messages on a loaded machine). We hold a
      per-stream lock for the whole write.
    * When no window update comes for 5 s, the write gives up after sending
      some of the frames, and tells the peer nothing: the peer holds half a
      message and waits for a rest that never comes. Worse, a reader that is
      merely slow (a process 10-30 s behind under overload) loses every
      message queued behind that write: 24,349 pub/sub RPCs thrown away in
      one 50-node benchmark run. So we wait for the window ourselves, for
      as long as it takes, and hand the library only what fits: waiting on a
      slow reader is backpressure, and every caller bounds it (the pub/sub
      queues and their stall detection, request timeouts). If the library
      still fails a write, we reset the stream, so the peer sees a reset at
      once, never a truncated message.
    """

    async def _auto_tune_and_send_window_update(self, *, bytes_read: int = 0) -> None:
        """Grant the peer more window only once half of it has been consumed.

        go-yamux's ``sendWindowUpdate`` (and the spec's intent): the peer may
        send a whole window before it needs an update, so one update per half
        window is enough. py-libp2p 0.8.1 also sends one after *every* read
        that frees anything (``RELEASE_ON_READ`` and its "partial slack"
        branch): every small message read costs a WINDOW_UPDATE frame back,
        encrypted and written — as many frames again as the data itself on
        SWIM, pub/sub and DHT streams. The library's window auto-tuning is
        kept: it runs whenever an update goes out, as in its own full-grow
        branch, which this is.
        """
        total = 0
        async with self.window_lock:
            buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
            delta = self.target_recv_window - (self.recv_window + buffered)
            if delta > 0 and delta >= self._grow_threshold():
                total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
                self._pending_recv_release = 0
        if total > 0:
            await self.send_window_update(total, skip_lock=True)

    async def _window(self) -> int:
        """The send window, once it is open (or the stream closed: 0)."""
        delay = WINDOW_POLL_MIN
        while self.send_window <= 0:
            if self.closed or self.send_closed:
                return 0
            await trio.sleep(delay)
            delay = min(delay * 2, WINDOW_POLL_MAX)
        return self.send_window

    async def write(self, data: bytes) -> None:
        lock = self.__dict__.get("_whole_write_lock")
        if lock is None:
            lock = self.__dict__["_whole_write_lock"] = trio.Lock()
        async with lock:
            try:
                view, sent, started = memoryview(data), 0, False
                try:
                    while sent < len(data):
                        # Never more than the open window: the library's write then
                        # never reaches its 5 s wait (a closed stream raises there).
                        n = min(await self._window(), len(data) - sent) or len(data) - sent
                        started = True  # from here frames of this message may be out
                        await super().write(bytes(view[sent:sent + n]) if n < len(data) else data)
                        sent += n
                except trio.Cancelled:
                    if started and sent < len(data):
                        # Our caller gave up mid-message (a timeout): the peer
                        # must not wait for the rest of a message that never comes.
                        # (We cannot tell whether the library's last frame went
                        # out before the cancellation landed, so a message sent
                        # whole may be reset too; our callers drop the stream
                        # on a cancelled write anyway.)
                        with trio.CancelScope(shield=True), trio.move_on_after(1):
                            try:
                                await self.reset()
                            except Exception:  # noqa: BLE001 — already gone
                                pass
                    raise
            except MuxedStreamError:
                with trio.move_on_after(1):
                    try:
                        await self.reset()
                    except Exception:  # already gone: nothing more to protect
                        pass
                raise


class GuardedYamux(Yamux):
    """py-libp2p's Yamux, holding the peer to its receive windows and stream limit."""

    def __init__(
        self,
        secured_conn: Any,
        peer_id: Any,
        is_initiator: bool | None = None,
        on_close: Any = None,
        *,
        guard: YamuxGuard | None = None,
    ) -> None:
        super().__init__(secured_conn, peer_id, is_initiator=is_initiator, on_close=on_close)
        self._guard = guard or YamuxGuard()
        self._reservation = self._guard.resources.reservation(peer_id, SERVICE)
        self.violation: str | None = None
        #: Set once the connection is going: its last frames need not arrive whole.
        self.closing = False
        #: A frame write timed out (_write_stalled) and the socket was closed.
        self.stalled = False
        #: RTT measurements sent (_measure_rtt_loop).
        self.rtt_pings = 0
        #: The peer said GO_AWAY: it closed the connection on purpose.
        self.go_away_received = False
        #: ... before we started closing it: the close was the peer's, not ours.
        self.closed_by_peer = False
        #: The byte stream ended (EOF or error) before either side said it was closing.
        self._ended_unannounced = False
        self.stream_buffers = _Buffers(self)  # type: ignore[assignment]
        self.secured_conn = _FrameGate(self, secured_conn)  # type: ignore[assignment]

    @property
    def reserved(self) -> int:
        """Bytes this connection holds in stream buffers (all reserved)."""
        return self._reservation.size

    @property
    def ended_abruptly(self) -> bool:
        """The byte stream ended before either side said it was closing (no
        GO_AWAY either way, no close or violation of ours): what a peer whose
        process died, or whose host vanished, leaves behind. Membership
        treats it as a hint to check on the peer."""
        return self._ended_unannounced

    def _note_end(self) -> None:
        """The read side hit the end of the byte stream (or an error)."""
        if not (self.closing or self.go_away_received or self.violation is not None):
            self._ended_unannounced = True

    def inbound_streams(self) -> int:
        return sum(1 for s in self.streams.values() if not s.is_initiator)

    # -- checks ----------------------------------------------------------------

    async def _inspect(self, typ: int, flags: int, sid: int, length: int) -> int:
        """Judge a frame header before its body is read."""
        if self.violation is not None:
            await self._abort()
        if typ != TYPE_DATA and typ != TYPE_WINDOW_UPDATE:
            if typ == TYPE_GO_AWAY:
                self.go_away_received = True
                if not self.closing:
                    self.closed_by_peer = True
            return _PASS
        stream = self.streams.get(sid)
        if stream is None and flags & FLAG_SYN:
            if typ == TYPE_DATA and length > DEFAULT_WINDOW_SIZE:
                self._violate("window_overrun", WINDOW_OVERRUN_WEIGHT, f"{length} bytes with SYN on stream {sid}")
                await self._abort()
            if self.inbound_streams() >= self._guard.max_streams:
                self._guard.stats["streams_refused"] += 1
                self._guard.resources.hit("streams_per_connection", self.peer_id, f"stream {sid}")
                await self._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0))
                return _REFUSE
            return _PASS
        if typ == TYPE_DATA and stream is not None and length > stream.recv_window:
            self._violate(
                "window_overrun",
                WINDOW_OVERRUN_WEIGHT,
                f"{length} bytes on stream {sid} with {stream.recv_window} left in its window",
            )
            await self._abort()
        return _PASS

    def _admit(self, sid: int, n: int) -> bool:
        """Reserve ``n`` more buffered bytes for stream ``sid``; False drops them."""
        if self.violation is None and self._reservation.grow(n):
            return True
        if self.violation is None:
            self._violate("memory", MEMORY_OVERRUN_WEIGHT, f"{self._reservation.size} bytes buffered, {n} more refused")
        # The library decrements the window after appending; keep it from
        # going negative (and from logging about it) for data we dropped.
        stream = self.streams.get(sid)
        if stream is not None:
            stream.recv_window += n
        # Stop reading; handle_incoming closes the connection when it returns.
        self.event_shutting_down.set()
        return False

    def _violate(self, reason: str, weight: float, detail: str) -> None:
        self.violation = reason
        self._guard.stats["window_overruns" if reason == "window_overrun" else "memory_refusals"] += 1
        self._guard.violation(self.peer_id, reason, weight, detail)

    def _start_closing(self) -> None:
        """From now on frames need not arrive whole, and the one being
        written gets at most CLOSING_WRITE_TIMEOUT more (so a close, and a
        node's shutdown, never waits out a stuck frame's 10 s)."""
        self.closing = True
        scope = self.secured_conn.writing
        if scope is not None:
            scope.deadline = min(scope.deadline, trio.current_time() + CLOSING_WRITE_TIMEOUT)

    async def _write_stalled(self) -> None:
        """A frame did not go out in time: the byte stream may hold half of it. Close."""
        self.closing = True
        self.stalled = True
        self._guard.stats["write_stalls"] += 1
        self._guard.stats["connections_closed"] += 1
        self._guard._log.warning((str(self.peer_id), "write-stall"),
                                 "closing connection to %s: a frame waited %g s for socket space",
                                 self.peer_id, FRAME_WRITE_TIMEOUT)
        self.event_shutting_down.set()  # the read loop stops and cleans up
        await self.secured_conn._break_off()

    async def _go_away(self) -> None:
        self._start_closing()
        with trio.move_on_after(1):
            try:
                await self._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR))
            except Exception:  # the peer may be gone already; we close either way
                pass

    async def _abort(self) -> None:
        """GO_AWAY (protocol error), then stop the muxer's read loop by raising."""
        await self._go_away()
        raise YamuxViolation(self.violation or "violation")

    # -- streams ---------------------------------------------------------------

    async def open_stream(self) -> YamuxStream:
        stream = await super().open_stream()
        stream.__class__ = _WholeWriteStream
        return stream

    async def accept_stream(self) -> Any:
        stream = await super().accept_stream()
        if type(stream) is YamuxStream:
            stream.__class__ = _WholeWriteStream
        return stream

    # -- lifecycle -------------------------------------------------------------

    async def _measure_rtt_loop(self) -> None:
        """The library's RTT measurement (a Yamux PING; its reply handler
        computes the RTT), every RTT_REMEASURE instead of every 30 s."""
        await trio.sleep(0.5)  # as the library: let the connection settle first
        while not self.event_shutting_down.is_set():
            try:
                self._ping_id += 1
                self._ping_event = trio.Event()
                await self._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_PING, FLAG_SYN, 0, self._ping_id))
                self._ping_sent_time = trio.current_time()
                with trio.move_on_after(10.0):
                    await self._ping_event.wait()
            except Exception:  # noqa: BLE001 — the connection is going
                return
            self.rtt_pings += 1
            with trio.move_on_after(RTT_REMEASURE):
                await self.event_shutting_down.wait()

    async def handle_incoming(self) -> None:
        try:
            await super().handle_incoming()
        finally:
            # Shielded (the loop is often ended by cancellation) but bounded.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5 * CLOSING_WRITE_TIMEOUT):
                if self.violation is not None and not self.event_closed.is_set():
                    # _admit stopped the loop; say why and close.
                    await self._go_away()
                    await self._cleanup_on_error()
                elif self.stalled and not self.event_closed.is_set():
                    # The loop may have left quietly (its own write failed on
                    # the closed socket): wake the streams' readers and close.
                    await self._cleanup_on_error()
                if self.event_closed.is_set():
                    self._reservation.close()

    async def close(self, error_code: int = 0) -> None:
        self._start_closing()
        try:
            await super().close(error_code)
        finally:
            self._reservation.close()


def install_guarded_muxer(host: Any, guard: YamuxGuard) -> None:
    """Make the host's muxer negotiation build our classes with ``guard``.

    ``MuxerMultistream.new_conn`` builds the library's ``Yamux`` for
    ``/yamux/1.0.0`` whatever class is registered; this replacement builds
    the registered class.
    """
    mm = host.get_network().upgrader.muxer_multistream

    async def new_conn(conn: Any, peer_id: Any) -> Any:
        protocol, transport_class = await mm._selector.select(conn, conn.is_initiator, mm.negotiate_timeout)
        if isinstance(transport_class, type) and issubclass(transport_class, GuardedYamux):
            muxed = transport_class(conn, peer_id, is_initiator=conn.is_initiator, guard=guard)
        else:
            muxed = transport_class(conn, peer_id)
        return mm._annotate_connection(muxed, conn, protocol)

    mm.new_conn = new_conn
    mm.agentp2p_guard = guard


def yamux_guard(host: Any) -> YamuxGuard | None:
    """The guard :func:`install_guarded_muxer` put on ``host`` (for stats), if any."""
    return getattr(host.get_network().upgrader.muxer_multistream, "agentp2p_guard", None)
