"""SWIM frames over libp2p streams, with the semantics of UDP datagrams.

The connection side of the SWIM adapter (rust-libp2p's ConnectionHandler):
it knows nothing of what a frame means. The behaviour (service.py) calls
:meth:`SwimTransport.send` and is called back with every frame that arrives.

Theory of operation
-------------------
SWIM was designed for UDP: a probe that does not arrive in time is as good as
lost, and the protocol already copes with loss (indirect probes, suspicion,
refutation). So this transport never makes the core wait:

* **Streams.** ``/agentp2p/swim/1.0.0`` streams carry varint-length-prefixed
  protobuf frames in *both* directions: whoever first needs to talk opens
  one, and the other side answers on it. One stream per pair is the common
  case (two when both open at once; at most ``max_streams_per_peer``).
  Opening a stream costs py-libp2p a multistream-select round trip and, in a
  busy process, from 0.3 s up to seconds (measured), so streams are kept and
  reused, and a prober's first Ping already carries the way back for the Ack.
* **Outbound.** Each peer has a bounded queue and, while there is something
  to send, a writer task; :meth:`send` only enqueues
  (never awaits) and counts a drop when the queue is full. The task dials when
  needed — using the address hints from the core (``Send.addrs``), for at most
  ``dial_timeout`` while later frames queue behind it — and writes within
  ``write_timeout``. :meth:`prepare` (the core's ConnectAhead) queues an
  empty item: the writer opens the stream a period before the probe that
  will use it, and writes nothing. A failed dial drops the frame
  and whatever queued behind it; a failed or stuck write resets the stream
  (a write cut short may have left half a frame on it), and the next frame
  uses another stream or opens one. So ``write_timeout`` is for a stuck
  stream (a peer that stopped reading), not a late frame: in a starved
  process a write waits for the scheduler, and a stream reset for that
  costs a new stream at both ends just when CPU is short (the service's
  default is long: see SwimService). Idle writers end after
  ``idle_timeout``; streams stay until either side closes them.
* **Inbound.** Every stream has a reader that hands each frame, with the
  *authenticated* remote peer ID from the connection (never from the frame),
  to the behaviour. A stream that breaks framing is reset. Each peer has a
  frame budget (a token bucket, ratelimit.py, shared by all its streams):
  frames beyond it are dropped before they are decoded, counted in
  ``dropped_rate_limit``, and logged at most once per peer per ``log_interval``.
* **Fault injection (test hook).** :class:`FaultInjection` drops frames to and
  from a set of peers (a partition) and delays every frame we send (a slow
  node), here at the adapter, so real-socket tests can partition a network
  and heal it without touching the kernel.

All counters are in :class:`TransportStats`; nothing here raises into the
core loop.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

from agentp2p.bounded_counts import count_bounded
from agentp2p.errors import DialTimeout
from agentp2p.network.framing import FrameError, FrameReader, encode_varint, length_prefixed
from agentp2p.network.ratelimit import PeerRateLimiter

from agentp2p.throttled_log import ThrottledLog
from .wire import MAX_FRAME_BYTES, PROTOCOL_ID

log = logging.getLogger("agentp2p.swim")

__all__ = ["FaultInjection", "FrameError", "FrameReader", "SwimTransport", "TransportStats", "failure_reason",
           "length_prefixed"]

#: Peerstore TTL for addresses learned from SWIM (dial hints).


@dataclass
class FaultInjection:
    """TEST HOOK: make this node misbehave at the SWIM adapter only.

    ``block``: peers whose SWIM frames we neither send nor accept (a network
    partition as seen from here; libp2p connections stay up). ``delay``:
    seconds every frame we send waits before it is written (a slow node: its
    acks arrive late). Assign ``service.fault = FaultInjection(...)``; set it
    back to ``None`` to heal.
    """

    block: set[ID] = field(default_factory=set)
    delay: float = 0.0

    def blocks(self, peer: bytes) -> bool:
        return any(p.to_bytes() == peer for p in self.block)


@dataclass
class TransportStats:
    frames_out: int = 0  # frames written
    bytes_out: int = 0  # bytes written, length prefixes included
    frames_in: int = 0
    bytes_in: int = 0
    dropped_queue_full: int = 0  # send() found the peer's queue full
    dropped_dial: int = 0  # frames lost because the dial/stream open failed
    dropped_write: int = 0  # write failed or timed out
    write_timeouts: int = 0  # writes that ran out of write_timeout (the writer's are among dropped_write)
    dropped_not_running: int = 0  # frames before start / after stop
    dropped_fault_out: int = 0  # test hook: blocked outbound
    dropped_fault_in: int = 0  # test hook: blocked inbound
    dials: int = 0  # stream opens attempted ...
    dials_unconnected: int = 0  # ... of which needed a new connection (none was open as it began)
    dial_failures: int = 0  # ... that failed ...
    dial_timeouts: int = 0  # ... of which ran out of time (DialTimeout; the rest were refused or broke)
    inbound_streams: int = 0
    inbound_refused: int = 0  # a peer over its stream limit
    bad_streams: int = 0  # inbound streams reset for broken framing
    dropped_rate_limit: int = 0  # inbound frames over the peer's budget (not decoded)
    prepared: int = 0  # streams asked for ahead of a probe (ConnectAhead) where none was open
    dropped_no_stream: int = 0  # frames not worth a dial (gossip) with no SWIM stream open to the peer


_Item = tuple[bytes, tuple[bytes, ...], float, bool, str]

#: The most distinct ``kind`` labels counted in ``dials_for`` and reasons in
#: ``failed_opens`` (a body's kind, with why the core sent it: Ping:probe,
#: PushPull:burst...; some twenty in all; past this bound kinds are not
#: counted and reasons go to "other").
MAX_KINDS = 32

_PEER_ID = re.compile(r"\b(12D3Koo|16Uiu2|Qm)[1-9A-HJ-NP-Za-km-z]+")
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(\.\d+)?")


def failure_reason(exc: BaseException, connected: bool, kind: str = "", connected_after: bool = False) -> str:
    """A failed stream open's reason as a short label to count by: whether a
    connection was open as it began (and, if not, whether one was by the
    failure: ours, or one the peer opened meanwhile), the kind
    of frame that asked for it, and the error with its peer IDs and numbers
    taken out (so equal causes count together)."""
    text = _NUMBER.sub("N", _PEER_ID.sub("P", (str(exc) or type(exc).__name__)[:400]))
    where = "connected" if connected else "unconnected, connected by the failure" if connected_after else "unconnected"
    return f"{where}: {kind or '-'}: {type(exc).__name__}: {text[:80]}"


class _Link:
    """Everything about one peer: the outbound queue, whether its writer task
    runs, and every open SWIM stream with it (each has a reader)."""

    __slots__ = ("send", "recv", "streams", "writing")

    def __init__(self, capacity: int) -> None:
        #: (frame, address hints, not before, may dial, kind): see SwimTransport.send.
        self.send, self.recv = trio.open_memory_channel[_Item](capacity)
        self.streams: list[Any] = []
        self.writing = False


class SwimTransport:
    """Per-peer framed streams for SWIM (see the module docstring)."""

    def __init__(
        self,
        dialer: Any,
        on_frame: Callable[[bytes, bytes], None],
        *,
        dial_timeout: float,
        write_timeout: float,
        queue_size: int = 32,
        idle_timeout: float = 30.0,
        max_streams_per_peer: int = 4,
        inbound_rate: float | None = None,
        inbound_burst: float = 64,
        log_interval: float = 60.0,
    ) -> None:
        """``inbound_rate`` frames/s per peer (None: unlimited), ``inbound_burst``
        at once; rejections are logged at most once per peer per ``log_interval``."""
        self._dialer = dialer  # agentp2p.contract.Dialing
        self.limiter = PeerRateLimiter(inbound_rate, inbound_burst) if inbound_rate is not None else None
        self.log_throttle = ThrottledLog(log, interval=log_interval, clock=trio.current_time)
        self._on_frame = on_frame
        self.dial_timeout = dial_timeout
        self.write_timeout = write_timeout
        self.queue_size = queue_size
        self.idle_timeout = idle_timeout
        self.max_streams_per_peer = max_streams_per_peer
        self.stats = TransportStats()
        #: Stream opens that needed a new connection, by the ``kind`` of the
        #: frame that asked for them (what reconnects a healed partition).
        self.dials_for: dict[str, int] = {}
        #: Failed stream opens by :func:`failure_reason` (at most MAX_KINDS
        #: reasons; past that, "other"): why probes are lost before they leave.
        self.failed_opens: dict[str, int] = {}
        self.fault: FaultInjection | None = None
        self._links: dict[bytes, _Link] = {}
        self._nursery: trio.Nursery | None = None
        self._ids: dict[bytes, ID] = {}

    # ---------------------------------------------------------------- outbound

    def send(
        self, peer: bytes, frame: bytes, addrs: Iterable[bytes] = (), dial: bool = True, kind: str = ""
    ) -> bool:
        """Queue ``frame`` for ``peer``; never blocks. False if it was dropped.
        With ``dial`` False it goes only over a SWIM stream already open.
        ``kind`` (the message's, say) labels the dial it may cost in ``dials_for``."""
        fault = self.fault
        if fault is not None and fault.blocks(peer):
            self.stats.dropped_fault_out += 1
            return False
        nursery = self._nursery
        if nursery is None:
            self.stats.dropped_not_running += 1
            return False
        if not dial:
            link = self._links.get(peer)
            if link is None or not link.streams:
                self.stats.dropped_no_stream += 1
                return False
        not_before = trio.current_time() + (fault.delay if fault is not None else 0.0)
        if not self._enqueue(nursery, peer, (length_prefixed(frame), tuple(addrs), not_before, dial, kind)):
            self.stats.dropped_queue_full += 1
            return False
        return True

    def prepare(self, peer: bytes, addrs: Iterable[bytes] = ()) -> bool:
        """Have a stream to ``peer`` open soon, dialing if need be (the core's
        ConnectAhead: a probe is coming). Never blocks; nothing is written.
        False if it could not even be queued."""
        fault = self.fault
        nursery = self._nursery
        if nursery is None or (fault is not None and fault.blocks(peer)):
            return False
        link = self._links.get(peer)
        if link is not None and link.streams:
            return True
        # Empty: open the stream, write nothing.
        if not self._enqueue(nursery, peer, (b"", tuple(addrs), 0.0, True, "ConnectAhead")):
            return False
        self.stats.prepared += 1
        return True

    def _enqueue(self, nursery: trio.Nursery, peer: bytes, item: _Item) -> bool:
        """Queue ``item`` on ``peer``'s link, starting its writer if none runs; False if the queue is full."""
        link = self._link(peer)
        if not link.writing:
            link.writing = True
            nursery.start_soon(self._writer, peer, link)
        try:
            link.send.send_nowait(item)
        except trio.WouldBlock:
            return False
        return True

    def _link(self, peer: bytes) -> _Link:
        link = self._links.get(peer)
        if link is None:
            link = self._links[peer] = _Link(self.queue_size)
        return link

    def _forget_if_unused(self, peer: bytes, link: _Link) -> None:
        if not link.writing and not link.streams and self._links.get(peer) is link:
            del self._links[peer]

    def _peer_id(self, peer: bytes) -> ID:
        pid = self._ids.get(peer)
        if pid is None:
            pid = ID(peer)
            if len(self._ids) > 4096:
                self._ids.clear()
            self._ids[peer] = pid
        return pid

    async def _writer(self, peer: bytes, link: _Link) -> None:
        """Write ``link``'s queue to the newest stream with the peer, opening
        one when there is none."""
        pid = self._peer_id(peer)
        try:
            while True:
                item = None
                with trio.move_on_after(self.idle_timeout):
                    item = await link.recv.receive()
                if item is None:
                    # Idle. No await between this check and `writing = False`,
                    # so a concurrent send() either got in or starts a new writer.
                    try:
                        item = link.recv.receive_nowait()
                    except trio.WouldBlock:
                        return
                data, addrs, not_before, dial, kind = item
                if not_before > trio.current_time():
                    await trio.sleep_until(not_before)
                if not link.streams and not dial:
                    self.stats.dropped_no_stream += 1  # its stream closed while it waited
                    continue
                if not link.streams:
                    stream = await self._open(pid, addrs, kind=kind)
                    if stream is None:
                        self.stats.dropped_dial += (1 if data else 0) + self._drain(link)
                        continue
                    if len(link.streams) >= self.max_streams_per_peer:
                        await _reset_quietly(stream)
                    else:
                        link.streams.append(stream)
                        assert self._nursery is not None
                        self._nursery.start_soon(self._reader, peer, link, stream)
                if not data:
                    continue  # a prepare(): the stream is all it wanted
                if not link.streams:
                    self.stats.dropped_write += 1
                    continue
                stream = link.streams[-1]
                if not await self._write(stream, data):
                    self.stats.dropped_write += 1
                    with contextlib.suppress(ValueError):
                        link.streams.remove(stream)
                    await _reset_quietly(stream)
        finally:
            link.writing = False
            self._forget_if_unused(peer, link)

    @staticmethod
    def _drain(link: _Link) -> int:
        """Empty the queue; how many frames it held (prepare()'s empty items are none)."""
        n = 0
        while True:
            try:
                data, _addrs, _at, _dial, _kind = link.recv.receive_nowait()
            except trio.WouldBlock:
                return n
            n += 1 if data else 0

    async def _open(self, pid: ID, addrs: tuple[bytes, ...], *, dial: bool = True, kind: str = "") -> Any:
        """A new stream to ``pid``, or None (a lost datagram, counted).

        Through the node's one dialer, with the core's address hints. No DHT
        lookup: SWIM hears of members with their addresses, and a member we
        cannot reach at them is what the protocol is there to detect.
        """
        self.stats.dials += 1
        connected = self._dialer.is_connected(pid)
        if dial and not connected:
            self.stats.dials_unconnected += 1
            if kind in self.dials_for or len(self.dials_for) < MAX_KINDS:
                self.dials_for[kind] = self.dials_for.get(kind, 0) + 1
        try:
            return await self._dialer.open_stream(
                pid, [PROTOCOL_ID], addrs=addrs, timeout=self.dial_timeout, dial=dial, lookup=False
            )
        except Exception as exc:  # noqa: BLE001 - a lost datagram, counted
            self.stats.dial_failures += 1
            if isinstance(exc, DialTimeout):
                self.stats.dial_timeouts += 1
            reason = failure_reason(exc, connected, kind, not connected and self._dialer.is_connected(pid))
            count_bounded(self.failed_opens, reason, MAX_KINDS)
            log.debug("swim: cannot open a stream to %s: %r", pid, exc)
            return None

    async def _write(self, stream: Any, data: bytes) -> bool:
        try:
            with trio.fail_after(self.write_timeout):
                await stream.write(data)
        except trio.TooSlowError:
            self.stats.write_timeouts += 1  # the writer counts dropped_write too (send_now tries on)
            return False
        except Exception:  # noqa: BLE001 - counted by the caller
            return False
        self.stats.frames_out += 1
        self.stats.bytes_out += len(data)
        return True

    async def send_now(self, peer: bytes, frame: bytes, addrs: Iterable[bytes] = ()) -> bool:
        """Write one frame at once, bypassing the queue (to announce a leave
        while the node is stopping and the writer tasks are gone). Uses an
        open stream with the peer if there is one, else opens one over a
        connection already open (no dial; the caller bounds the time)."""
        fault = self.fault
        if fault is not None and fault.blocks(peer):
            self.stats.dropped_fault_out += 1
            return False
        link = self._links.get(peer)
        data = length_prefixed(frame)
        if link is not None:
            for stream in reversed(link.streams):
                if await self._write(stream, data):
                    return True
        stream = await self._open(self._peer_id(peer), tuple(addrs), dial=False)
        if stream is None:
            self.stats.dropped_dial += 1
            return False
        try:
            ok = await self._write(stream, data)
            if not ok:
                self.stats.dropped_write += 1
            return ok
        finally:
            await _close_quietly(stream)

    # ----------------------------------------------------------------- inbound

    async def handle_inbound(self, stream: Any) -> None:
        """Stream handler for PROTOCOL_ID. The stream also becomes a way for
        our frames to reach that peer (no second stream needed for replies)."""
        sender: bytes = stream.muxed_conn.peer_id.to_bytes()
        link = self._link(sender)
        if len(link.streams) >= self.max_streams_per_peer:
            self.stats.inbound_refused += 1
            self._forget_if_unused(sender, link)
            await _reset_quietly(stream)
            return
        self.stats.inbound_streams += 1
        link.streams.append(stream)
        await self._reader(sender, link, stream)

    async def _reader(self, peer: bytes, link: _Link, stream: Any) -> None:
        """Deliver every frame on ``stream``, authenticated by the connection's
        peer ID (``peer``), until EOF or error."""
        reader = FrameReader(MAX_FRAME_BYTES)
        try:
            while True:
                try:
                    data = await stream.read(65536)
                except StreamEOF:
                    break
                except Exception:  # noqa: BLE001 - reset/closed by the peer: normal
                    break
                if not data:
                    break
                try:
                    frames = reader.feed(data)
                except FrameError as exc:
                    self.stats.bad_streams += 1
                    log.debug("swim: %s broke framing: %s", stream.muxed_conn.peer_id, exc)
                    with contextlib.suppress(ValueError):
                        link.streams.remove(stream)
                    await _reset_quietly(stream)
                    return
                limiter = self.limiter
                for frame in frames:
                    fault = self.fault
                    if fault is not None and fault.blocks(peer):
                        self.stats.dropped_fault_in += 1
                        continue
                    if limiter is not None and not limiter.allow(peer, trio.current_time()):
                        self.stats.dropped_rate_limit += 1
                        self.log_throttle.log(
                            logging.WARNING, (peer, "budget"), "swim: %s is over its frame budget: dropped a frame",
                            self._peer_id(peer),
                        )
                        continue
                    self.stats.frames_in += 1
                    self.stats.bytes_in += len(frame) + len(encode_varint(len(frame)))
                    self._on_frame(peer, frame)
        finally:
            with contextlib.suppress(ValueError):
                link.streams.remove(stream)
            self._forget_if_unused(peer, link)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await _close_quietly(stream)

    # ---------------------------------------------------------------- lifetime

    async def run(self) -> None:
        """Own the per-peer tasks until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await trio.sleep_forever()
        finally:
            self._nursery = None

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def open_links(self) -> int:
        """Peers we hold state for (a writer running or a stream open)."""
        return len(self._links)

    def open_streams(self) -> int:
        return sum(len(link.streams) for link in self._links.values())


async def _reset_quietly(stream: Any) -> None:
    with contextlib.suppress(Exception):
        await stream.reset()


async def _close_quietly(stream: Any) -> None:
    with contextlib.suppress(Exception):
        await stream.close()
