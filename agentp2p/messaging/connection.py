"""One /agentp2p/msg/1.0.0 stream: moves bytes between it and a session.

The connection handler (rust-libp2p's ConnectionHandler) knows nothing of
what messages mean; it reads, splits frames, hands them to its
:class:`~agentp2p.messaging.link.Link`, and writes whatever the session has
to send. Two tasks per stream:

* **reader**: ``stream.read(64 KiB)`` (py-libp2p reads are costly, so few and
  big), :class:`~.wire.FrameReader` splits, each frame is decoded and given
  to the link in one synchronous step.
* **writer**: sleeps until the link says there is output, then pulls frames
  from the session until it has none (``session.transmit``) and writes them
  all with *one* ``stream.write``. Whatever the application queues while a
  write is in progress goes out together in the next one: coalescing with no
  added delay when idle, and batches that grow with load.

Any stream error (EOF, reset, a frame that does not parse) ends both tasks;
the link then tells its session ``Disconnected`` and the stream is reset.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from agentp2p.messaging.wire import FrameError, FrameReader, decode_frame, length_prefixed

if TYPE_CHECKING:
    from agentp2p.messaging.link import Link

log = logging.getLogger("agentp2p.messaging")

__all__ = ["Connection"]


class Connection:
    def __init__(self, link: Link, stream: Any, *, outbound: bool, read_chunk: int, write_batch: int) -> None:
        self.link = link
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
            self.link.connection_lost(self)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await self.stream.reset()
                except Exception:  # noqa: BLE001 - already dead is fine
                    pass
            self.closed.set()

    async def _reader(self, scope: trio.CancelScope) -> None:
        reader = FrameReader()
        link = self.link
        try:
            while True:
                data = await self.stream.read(self._read_chunk)
                if not data:
                    break
                self.bytes_in += len(data)
                frames = [decode_frame(raw) for raw in reader.feed(data)]
                if frames:
                    await link.prepare(self, frames)
                    link.on_frames(self, frames)
        except FrameError as exc:
            link.counters["bad_frames"] += 1
            self.error = f"bad frame: {exc}"
            log.info("messaging: %s from %s, resetting the stream", self.error, link.peer)
        except trio.Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - EOF, reset, connection gone: all mean "lost"
            self.error = f"{type(exc).__name__}: {exc}"
        scope.cancel()

    async def _writer(self, scope: trio.CancelScope) -> None:
        link = self.link
        session = link.session
        budget = self._write_batch
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while True:
                    if link.conn is not self:
                        return  # replaced: never pull frames meant for the new stream
                    now = trio.current_time()
                    chunks: list[bytes] = []
                    size = 0
                    while size < budget:
                        frame = session.transmit(now)
                        if frame is None:
                            break
                        chunk = length_prefixed(frame)
                        chunks.append(chunk)
                        size += len(chunk)
                    if not chunks:
                        break
                    link.after_transmit()
                    await self.stream.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                    self.bytes_out += size
                    self.writes += 1
        except trio.Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - the stream died under us
            self.error = f"{type(exc).__name__}: {exc}"
        scope.cancel()
