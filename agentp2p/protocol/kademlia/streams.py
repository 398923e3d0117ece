"""Kademlia messages on libp2p streams: framing, and one reused outbound stream per peer.

Wire format (kad-dht/README.md "RPC messages"): each message is a protobuf
preceded by its length as an unsigned varint; a stream carries any number of
request/response pairs, strictly alternating.

* :class:`MessageStream` frames and unframes. Reads go through a bounded
  :class:`~agentp2p.network.framing.FrameReader`: a length prefix over the
  codec's ``max_message_bytes`` is refused (FrameError) before a byte of its
  body is buffered.
* :class:`PeerSender` is go-libp2p-kad-dht's "message sender": successive
  requests to one peer share one stream (write the request, read the answer
  on the same stream), serialised by a per-peer FIFO lock, so a lookup pays
  a protocol negotiation once per peer instead of once per request. A
  reused stream whose *write* fails (the peer reset it while it sat idle)
  is replaced by a fresh one and the request sent once more. A stream that
  ends after the request was written is the peer's verdict and is not
  retried: a refusal is a reset, and py-libp2p reads a reset as a plain EOF,
  so retrying there would send every refused PUT_VALUE twice. Streams idle
  for longer than ``max_idle`` (30 s) are replaced rather than reused:
  servers reset idle streams (go and we after 1 min), and a reset racing our
  write would otherwise look like a refusal. Any failure, deadline or
  cancellation in the middle of an exchange resets the stream: a late
  answer must never be read as the answer to the next request.

Nothing here knows Kademlia: bytes in, bytes out (the core decodes).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.network.stream.exceptions import StreamEOF

from agentp2p.bounded_counts import count_bounded
from agentp2p.network.framing import FrameReader, length_prefixed

__all__ = ["Abandoned", "Cut", "MessageStream", "PeerSender", "SenderStats", "StaleStream", "Ticket", "Unsent",
           "reset_quietly"]

#: Bytes per stream.read(): py-libp2p reads are costly, so few and big; the
#: FrameReader keeps what belongs to the next message.
READ_CHUNK = 64 * 1024


class StaleStream(Exception):
    """The stream ended (EOF or reset: py-libp2p cannot tell) instead of an answer."""


async def reset_quietly(stream: Any) -> None:
    """Reset ``stream`` without raising, even inside a cancelled scope."""
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        with contextlib.suppress(Exception):
            await stream.reset()


class MessageStream:
    """Length-prefixed messages on one libp2p stream."""

    __slots__ = ("stream", "_reader", "_ready", "last_used")

    def __init__(self, stream: Any, max_message_bytes: int) -> None:
        self.stream = stream
        self._reader = FrameReader(max_message_bytes)
        self._ready: deque[bytes] = deque()
        self.last_used = trio.current_time()

    async def read(self) -> bytes | None:
        """The next message; None at a clean EOF between messages.

        Raises FrameError for a bad or oversized length prefix, EOFError for
        an EOF inside a message, and whatever the stream raises (reset...).
        At most one chunk's worth of frames is ever held here: we read again
        only once every frame already split off has been taken.
        """
        while not self._ready:
            try:
                data = await self.stream.read(READ_CHUNK)
            except StreamEOF:
                data = b""
            if not data:
                if self._reader.buffered:
                    raise EOFError("stream ended inside a message")
                return None
            self._ready.extend(self._reader.feed(data))
        self.last_used = trio.current_time()
        return self._ready.popleft()

    async def write(self, message: bytes) -> None:
        await self.stream.write(length_prefixed(message))
        self.last_used = trio.current_time()

    async def reset(self) -> None:
        await reset_quietly(self.stream)


#: Exception types kept apart in ``SenderStats.failure_kinds``.
MAX_FAILURE_KINDS = 16


@dataclass
class SenderStats:
    """Outbound stream accounting, summed over all peers."""

    requests: int = 0  # exchanges started (a retry is not a new one)
    streams_opened: int = 0
    streams_reused: int = 0  # requests that went out on an already open stream
    retries: int = 0  # stale reused streams replaced and the request re-sent
    failures: int = 0  # exchanges that raised (dial, negotiation, reset, garbage, deadline)
    cancelled: int = 0  # exchanges cut by their deadline, or abandoned once the core no longer needed them
    #: Requests that found the peer's stream busy with another exchange and
    #: queued behind it (the per-peer FIFO), and the time they spent there:
    #: a request's deadline runs while it waits.
    queued: int = 0
    queued_ms: int = 0  # summed over requests: two queued for 1 s together count 2,000
    abandoned_cut: int = 0  # given up while awaiting the answer, and cut: a wanted request waited
    abandoned_unsent: int = 0  # given up while the stream was being opened: never sent
    #: ``failures`` by exception type (dial refused, negotiation timed out,
    #: stream reset, ...): the first thing an operator asks of a failure rate.
    #: Bounded: at most MAX_FAILURE_KINDS kinds, the rest counted as "other".
    failure_kinds: dict[str, int] = field(default_factory=dict)

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # a nursery's wrapping says nothing of the cause
        count_bounded(self.failure_kinds, type(exc).__name__, MAX_FAILURE_KINDS)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.__dict__)
        out["failure_kinds"] = dict(self.failure_kinds)
        return out


OpenStream = Callable[[], Awaitable[Any]]


def _cancelled(exc: BaseException) -> bool:
    """A cancellation, bare or as the only content of exception groups (a
    dial cancelled inside the library's nurseries arrives wrapped)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


class Ticket:
    """One request's claim on a :class:`PeerSender`. The owner sets
    ``abandoned`` (through :meth:`PeerSender.abandon`) once it no longer
    wants the answer."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned = False


class Abandoned(Exception):
    """The request was given up (:meth:`PeerSender.abandon`) and ended early:
    never sent (``Unsent``) or cut while it waited for its answer (``Cut``)."""


class Unsent(Abandoned):
    """Given up before its write: not sent; the stream stays, in step."""


class Cut(Abandoned):
    """Given up while it waited for its answer, and cut (the stream reset)
    because another request to the peer waited for the stream."""


class PeerSender:
    """Requests to one peer over one reused stream (see the module doc).

    A request the owner gave up (:meth:`abandon`) is not sent if it had not
    been yet. One already on the wire is left to finish, so the stream stays
    in step, unless a request still wanted waits for the stream: then it is
    cut, its stream reset, and the waiting one goes out on a fresh stream
    instead of waiting out the abandoned one's deadline.
    """

    __slots__ = ("_open", "_max_bytes", "_max_idle", "_stats", "lock", "ms", "users", "_waiting", "_holder",
                 "_holder_scope", "_awaiting_answer")

    def __init__(self, open_stream: OpenStream, *, max_message_bytes: int, max_idle: float,
                 stats: SenderStats) -> None:
        self._open = open_stream
        self._max_bytes = max_message_bytes
        self._max_idle = max_idle
        self._stats = stats
        #: FIFO (trio.Lock is fair): one exchange on the stream at a time.
        self.lock = trio.Lock()
        self.ms: MessageStream | None = None
        #: Requests holding or waiting for this sender (the owner forgets an idle one).
        self.users = 0
        #: Tickets waiting for the lock (as many as requests to this peer in flight).
        self._waiting: list[Ticket] = []
        self._holder: Ticket | None = None
        self._holder_scope: trio.CancelScope | None = None
        #: The holder's request is on the wire and its answer awaited.
        self._awaiting_answer = False

    @property
    def idle(self) -> bool:
        return self.users == 0 and not self.lock.locked()

    def drop(self) -> Any:
        """Forget the stream (the caller resets it); returns it, or None."""
        ms, self.ms = self.ms, None
        return None if ms is None else ms.stream

    def abandon(self, ticket: Ticket) -> None:
        """The owner no longer wants ``ticket``'s answer. One waiting for the
        stream is the owner's to cancel (nothing is lost); here the holder is
        cut if a wanted request waits behind it."""
        ticket.abandoned = True
        if ticket is self._holder:
            self._cut_for_waiters()

    def _cut_for_waiters(self) -> None:
        scope = self._holder_scope
        holder = self._holder
        if (holder is not None and holder.abandoned and self._awaiting_answer and scope is not None
                and not scope.cancel_called and any(not t.abandoned for t in self._waiting)):
            scope.cancel()
            self._stats.abandoned_cut += 1

    async def request(self, data: bytes, expect_response: bool, ticket: Ticket | None = None,
                      on_start: Callable[[], None] | None = None) -> bytes | None:
        """Send ``data``; the answer's bytes (None when ``expect_response`` is False).

        ``on_start`` is called once this request holds the stream (from then
        on, cancelling it costs the stream). Raises :class:`Abandoned` when
        ``ticket`` was given up and the request ended early for it. The
        caller bounds the time.
        """
        ticket = ticket if ticket is not None else Ticket()
        self.users += 1
        queued_at: float | None = None
        if self.lock.locked():
            queued_at = trio.current_time()
            self._stats.queued += 1
            self._waiting.append(ticket)
            self._cut_for_waiters()
        try:
            async with self.lock:
                if queued_at is not None:
                    self._dequeue(ticket, queued_at)
                    queued_at = None
                # trio hands the lock over at release: a request cancelled
                # meanwhile must not start (and cost the stream a reset).
                await trio.lowlevel.checkpoint_if_cancelled()
                if on_start is not None:
                    on_start()
                self._stats.requests += 1
                self._holder = ticket
                try:
                    with trio.CancelScope() as self._holder_scope:
                        return await self._exchange(data, expect_response, ticket)
                    raise Cut("cut for a request waiting for the peer")
                except Abandoned:
                    raise
                except BaseException as exc:
                    if _cancelled(exc):
                        # The request's deadline, or a lookup that ended and no longer
                        # needs the answer: counted apart from the peer's failures.
                        self._stats.cancelled += 1
                    else:
                        self._stats.failed(exc)
                    raise
                finally:
                    self._holder = self._holder_scope = None
        finally:
            self.users -= 1
            if queued_at is not None:  # cancelled while still waiting for the stream
                self._dequeue(ticket, queued_at)

    def _dequeue(self, ticket: Ticket, queued_at: float) -> None:
        """``ticket`` stops waiting for the lock (it got it, or was cancelled)."""
        self._waiting.remove(ticket)
        self._stats.queued_ms += round((trio.current_time() - queued_at) * 1000)

    async def _exchange(self, data: bytes, expect_response: bool, ticket: Ticket) -> bytes | None:
        ms = self.ms
        if ms is not None and trio.current_time() - ms.last_used > self._max_idle:
            self.ms = None
            await ms.reset()
            ms = None
        for attempt in (0, 1):
            fresh = ms is None
            if ms is None:
                ms = self.ms = MessageStream(await self._open(), self._max_bytes)
                self._stats.streams_opened += 1
            else:
                self._stats.streams_reused += 1
            if ticket.abandoned:  # given up while the stream was opened: keep it for the next
                self._stats.abandoned_unsent += 1
                raise Unsent("given up before it was sent")
            stale: BaseException | None = None
            try:
                try:
                    await ms.write(data)
                except Exception as exc:  # the write is where a stale stream shows
                    stale = exc
                    raise
                if not expect_response:
                    if fresh and hasattr(ms.stream, "accepted"):
                        # A lazy stream (network/multistream.py): without an
                        # answer to read, a refusal of the protocol would go
                        # unnoticed and the message count as sent.
                        await ms.stream.accepted()
                    return None
                self._awaiting_answer = True
                try:
                    self._cut_for_waiters()  # given up while it opened the stream or wrote
                    answer = await ms.read()
                finally:
                    self._awaiting_answer = False
                if answer is None:
                    raise StaleStream("the peer closed (or reset) the stream instead of answering")
                return answer
            except BaseException:
                if self.ms is ms:
                    self.ms = None
                await ms.reset()
                if stale is None or fresh or attempt == 1:
                    raise
                self._stats.retries += 1
                ms = None
        raise AssertionError("unreachable")  # pragma: no cover
