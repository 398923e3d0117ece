"""One /agentp2p/msg/1.0.0 stream: moves bytes between it and a session.

The connection handler (rust-libp2p's ConnectionHandler) knows nothing of
what messages mean; it reads, splits frames, hands them up, and writes
whatever there is to send. It knows its owner (the link) only as a
:class:`StreamOwner` — what it reports up and pulls from — and imports
nothing above it, so the flow is one way: service -> link -> connection
down, reports back up through the owner. Two tasks per stream:

* **reader**: ``stream.read(64 KiB)`` (py-libp2p reads are costly, so few and
  big), :class:`~.wire.FrameReader` splits, the frames of one read are
  decoded and handed up together (:meth:`StreamOwner.frames_received`).
* **writer**: sleeps until the owner says there is output (:meth:`Connection.wake`),
  then pulls frames (:meth:`StreamOwner.next_frame`) until there are none
  and writes them all with *one* ``stream.write``. Whatever the application
  queues while a write is in progress goes out together in the next one:
  coalescing with no added delay when idle, and batches that grow with load.

Any stream error (EOF, reset, a frame that does not parse) ends both tasks;
the owner hears :meth:`StreamOwner.connection_lost` and the stream is reset.

Size limits are enforced here, before anything is buffered on the peer's
behalf: a length prefix above ``max_frame`` is refused by the
:class:`~.wire.FrameReader` before one byte of the frame is kept, and a
Data frame carrying an envelope whose payload exceeds ``max_message`` (or
whose encoding exceeds ``max_envelope``) is refused before the session sees
it. Either way the stream is reset and the owner hears of it
(:meth:`StreamOwner.bad_input`: ``oversized_frame`` / ``oversized_envelope``,
or ``bad_frame`` for one that does not parse) with the offence weight
below: an honest sender never produces either.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import trio

from agentp2p.messaging.wire import (
    MAX_FRAME_BYTES,
    MAX_MESSAGE_BYTES,
    FrameError,
    FrameReader,
    decode_frame,
    length_prefixed,
    max_envelope_for,
)

log = logging.getLogger("agentp2p.messaging")

__all__ = ["Connection", "Oversized", "StreamOwner"]

#: Offence weight for an oversized frame or envelope (never sent by an honest
#: peer; the penalty box bans at 20 points, so four in a row ban).
OVERSIZED_OFFENCE = 5.0
MALFORMED_OFFENCE = 2.0


class StreamOwner(Protocol):
    """What a connection reports up and pulls from (the link implements it).

    Every call names the connection, as a replaced one may still report
    until its tasks end; the owner ignores what is not its current one.
    """

    async def frames_received(self, conn: Connection, frames: list[Any]) -> None:
        """The frames of one read, decoded and size-checked, in order."""
        ...

    def next_frame(self, conn: Connection, now: float) -> bytes | None:
        """The next frame to write (no length prefix), or None when there is nothing (more)."""
        ...

    def transmitted(self, conn: Connection) -> None:
        """The writer pulled frames and is about to write them."""
        ...

    def bad_input(self, conn: Connection, what: str, weight: float, detail: str) -> None:
        """The peer sent what no honest peer sends (``what``: ``oversized_frame``,
        ``oversized_envelope``, ``bad_frame``); the stream is being reset."""
        ...

    def connection_lost(self, conn: Connection) -> None:
        """The stream is gone (``conn.error`` says why, if known)."""
        ...


class Oversized(FrameError):
    """A frame or envelope above the limits (``kind``: "frame" or "envelope")."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _check_sizes(frame: Any, max_message: int, max_envelope: int, raw_len: int) -> None:
    if frame.WhichOneof("body") != "data":
        return
    for env in frame.data.messages:
        if len(env.payload) > max_message:
            raise Oversized("envelope", f"payload of {len(env.payload)} bytes exceeds {max_message}")
        if raw_len > max_envelope and env.ByteSize() > max_envelope:
            raise Oversized("envelope", f"envelope of {env.ByteSize()} bytes exceeds {max_envelope}")


class Connection:
    def __init__(
        self,
        owner: StreamOwner,
        stream: Any,
        *,
        outbound: bool,
        read_chunk: int,
        write_batch: int,
        max_frame: int = MAX_FRAME_BYTES,
        max_message: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.owner = owner
        self._max_frame = max_frame
        self._max_message = max_message
        self._max_envelope = max_envelope_for(max_message)
        self.stream = stream
        self.outbound = outbound
        self._read_chunk = read_chunk
        self._write_batch = write_batch
        self._wake = trio.Event()
        self._scope = trio.CancelScope()
        self.closed = trio.Event()
        self.bytes_in = 0
        self.bytes_out = 0
        self.writes = 0
        self.error: str | None = None

    def wake(self) -> None:
        """The session may have output: let the writer pull it."""
        self._wake.set()

    def close(self) -> None:
        """Stop both tasks; the stream is reset (replaced or shutting down)."""
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader, nursery.cancel_scope)
                    nursery.start_soon(self._writer, nursery.cancel_scope)
        finally:
            self.owner.connection_lost(self)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await self.stream.reset()
                except Exception:  # noqa: BLE001 - already dead is fine
                    pass
            self.closed.set()

    async def _reader(self, scope: trio.CancelScope) -> None:
        reader = FrameReader(self._max_frame)
        owner = self.owner
        max_message, max_envelope = self._max_message, self._max_envelope
        try:
            while True:
                data = await self.stream.read(self._read_chunk)
                if not data:
                    break
                self.bytes_in += len(data)
                frames = []
                for raw in reader.feed(data):
                    frame = decode_frame(raw)
                    _check_sizes(frame, max_message, max_envelope, len(raw))
                    frames.append(frame)
                if frames:
                    await owner.frames_received(self, frames)
        except FrameError as exc:
            if isinstance(exc, Oversized) or "exceeds" in str(exc):
                kind = exc.kind if isinstance(exc, Oversized) else "frame"
                what, weight = f"oversized_{kind}", OVERSIZED_OFFENCE
            else:
                what, weight = "bad_frame", MALFORMED_OFFENCE
            self.error = f"bad frame: {exc}"
            owner.bad_input(self, what, weight, self.error)
        except trio.Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - EOF, reset, connection gone: all mean "lost"
            self.error = f"{type(exc).__name__}: {exc}"
        scope.cancel()

    async def _writer(self, scope: trio.CancelScope) -> None:
        owner = self.owner
        budget = self._write_batch
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while True:
                    now = trio.current_time()
                    chunks: list[bytes] = []
                    size = 0
                    while size < budget:
                        frame = owner.next_frame(self, now)  # None too once replaced
                        if frame is None:
                            break
                        chunk = length_prefixed(frame)
                        chunks.append(chunk)
                        size += len(chunk)
                    if not chunks:
                        break
                    owner.transmitted(self)
                    await self.stream.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                    self.bytes_out += size
                    self.writes += 1
        except trio.Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - the stream died under us
            self.error = f"{type(exc).__name__}: {exc}"
        scope.cancel()
