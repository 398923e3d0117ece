"""Reads of a raw connection in bulk, served to the layers above from one buffer.

py-libp2p's Noise reads each message in two reads of the raw connection: its
2-byte length, then its body. Each read is a ``receive_some`` on the socket
behind a lock: two trips through trio's scheduler and a ``recv`` system call,
even when the whole message (and often the next few) is already in the
kernel's buffer. Every frame a node reads pays that twice; at 100 nodes on
one machine, moving frames is most of a message's CPU (docs/scale.md).

:class:`BufferedReads` asks the connection below for up to ``chunk`` bytes
at a time and answers each read from what it holds. It never returns more
than was asked for and hands over every byte in order: the layers above see
the same byte stream, cut differently. What it holds is at most one
``chunk`` per connection (64 KiB), *on top of* the kernel's socket buffer
(the kernel's window reopens as we take bytes), before authentication too:
the handshake's first read asks for a chunk like any other.

Two things differ from a plain socket read, on purpose:

* a read answered from what is held does not checkpoint (no trip through
  trio's scheduler: that is the saving). A deadline around a loop of reads
  fires at the next read that reaches the socket, at most one chunk later;
  no byte is lost either way;
* it serves one reader at a time: a second task reading while one waits on
  the socket would get bytes out of order, so it gets
  ``trio.BusyResourceError`` instead (after the handshake Yamux's one
  reader task is the only one; during it, the upgrade's).

:func:`install_buffered_reads` wraps every raw connection as it enters the
security upgrade, below everything else the upgrade does, so all above it —
the private network's cipher, multistream-select, Noise, Yamux — reads
through it, and nothing reads the socket around it. (QUIC connections do not
take that path: their streams come framed from aioquic.)
"""

from __future__ import annotations

from typing import Any

import trio

from agentp2p.network.raw_wrapper import RawConnectionWrapper

__all__ = ["BufferedReads", "READ_CHUNK", "install_buffered_reads"]

#: Bytes asked of the socket at once: one Noise message at most (65,535),
#: and the most a read can leave held.
READ_CHUNK = 65536


class BufferedReads(RawConnectionWrapper):
    """A raw connection whose reads come from one bounded buffer (see the module)."""

    def __init__(self, inner: Any, chunk: int = READ_CHUNK) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        super().__init__(inner)
        self._chunk = chunk
        self._held = b""
        self._pos = 0
        self._reading = False

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    @property
    def held(self) -> int:
        """Bytes read from the socket and not yet handed over."""
        return len(self._held) - self._pos

    async def read(self, n: int | None = None) -> bytes:
        """Up to ``n`` bytes (all that is held, or one read below, for None)."""
        if n is not None and n < 0:
            n = None
        held = self._held
        if self._pos < len(held):
            if n == 0:
                return b""
            end = len(held) if n is None else min(len(held), self._pos + n)
            out = held[self._pos:end]
            if end == len(held):
                self._held, self._pos = b"", 0
            else:
                self._pos = end
            return out
        if n == 0:
            return b""
        if self._reading:
            raise trio.BusyResourceError("another task is already reading this connection")
        self._reading = True
        try:
            data = await self._inner.read(None if n is None else max(n, self._chunk))
        finally:
            self._reading = False
        # An empty read (the end) passes up as it is; so does a later read's
        # answer below (the inbound path's raises: network/inbound.py).
        if n is None or len(data) <= n:
            return data
        self._held, self._pos = data, n
        return data[:n]

    async def close(self) -> None:
        self._held, self._pos = b"", 0
        await self._inner.close()


def install_buffered_reads(host: Any) -> None:
    """Wrap each raw connection of ``host`` in :class:`BufferedReads` before it is secured.

    Replaces the upgrader's ``upgrade_security`` on the host's instance;
    installed after the private network's wrapper (network/pnet.py), it runs
    first, so that wrapper reads through the buffer too. The markers the
    wrapped function carries (``_agentp2p_*``: pnet's) are carried over, so
    a repeated install of either finds its own and does nothing. Idempotent.
    """
    upgrader = host.get_network().upgrader
    inner = upgrader.upgrade_security
    if getattr(inner, "_agentp2p_buffered", False):
        return

    async def buffered(raw_conn: Any, is_initiator: bool, peer_id: Any = None) -> Any:
        return await inner(BufferedReads(raw_conn), is_initiator, peer_id)

    for name, value in vars(inner).items() if hasattr(inner, "__dict__") else ():
        if name.startswith("_agentp2p_"):
            setattr(buffered, name, value)
    buffered._agentp2p_buffered = True  # type: ignore[attr-defined]
    upgrader.upgrade_security = buffered
