"""Reads of a raw connection in bulk, served to the layers above from one buffer.

py-libp2p's Noise reads each message in two reads of the raw connection: its
2-byte length, then its body. Each read is a ``receive_some`` on the socket
behind a lock: two trips through trio's scheduler and a ``recv`` system call,
even when the whole message (and often the next few) is already in the
kernel's buffer. Every frame a node reads pays that twice; at 100 nodes on
one machine, moving frames is most of a message's CPU (docs/scale.md).

:class:`BufferedReads` asks the connection below for up to ``chunk`` bytes
at a time and answers each read from what it holds, without awaiting
anything while it holds bytes. It never holds more than one ``chunk``
(bytes the kernel would otherwise hold), never returns more than was asked
for, and hands over every byte in order: the layers above see the same byte
stream, cut differently.

:func:`install_buffered_reads` wraps every raw connection as it enters the
security upgrade, below everything else the upgrade does, so all above it —
the private network's cipher, multistream-select, Noise, Yamux — reads
through it, and nothing reads the socket around it. (QUIC connections do not
take that path: their streams come framed from aioquic.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["BufferedReads", "READ_CHUNK", "install_buffered_reads"]

#: Bytes asked of the socket at once: one Noise message at most (65,535),
#: and the most a read can leave held.
READ_CHUNK = 65536


class BufferedReads:
    """A raw connection whose reads come from one bounded buffer (see the module)."""

    def __init__(self, inner: Any, chunk: int = READ_CHUNK) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self._inner = inner
        self._chunk = chunk
        self._held = b""
        self._pos = 0
        self.is_initiator = getattr(inner, "is_initiator", False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def held(self) -> int:
        """Bytes read from the socket and not yet handed over."""
        return len(self._held) - self._pos

    async def read(self, n: int | None = None) -> bytes:
        held = self._held
        if self._pos < len(held):
            if n is None or n < 0:
                end = len(held)
            elif n == 0:
                return b""
            else:
                end = min(len(held), self._pos + n)
            out = held[self._pos:end]
            if end == len(held):
                self._held, self._pos = b"", 0
            else:
                self._pos = end
            return out
        if n is None or n < 0:
            return await self._inner.read(n)
        if n == 0:
            return b""
        data = await self._inner.read(max(n, self._chunk))
        if len(data) <= n:
            return data
        self._held, self._pos = data, n
        return data[:n]

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self._inner.get_remote_address()

    def get_transport_addresses(self) -> list[Any]:
        return self._inner.get_transport_addresses()

    def get_connection_type(self) -> Any:
        return self._inner.get_connection_type()


def install_buffered_reads(host: Any) -> None:
    """Wrap each raw connection of ``host`` in :class:`BufferedReads` before it is secured.

    Replaces the upgrader's ``upgrade_security`` on the host's instance;
    installed after the private network's wrapper (network/pnet.py), it runs
    first, so that wrapper reads through the buffer too. Idempotent.
    """
    upgrader = host.get_network().upgrader
    inner = upgrader.upgrade_security
    if getattr(inner, "_agentp2p_buffered", False):
        return

    async def buffered(raw_conn: Any, is_initiator: bool, peer_id: Any = None) -> Any:
        return await inner(BufferedReads(raw_conn), is_initiator, peer_id)

    buffered._agentp2p_buffered = True  # type: ignore[attr-defined]
    upgrader.upgrade_security = buffered
