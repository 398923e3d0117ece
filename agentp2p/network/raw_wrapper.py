"""The base of our layers over a raw connection (bulk reads, the private network, first-bytes hints).

Each wraps the connection below and changes how it reads or writes; the
rest (close, addresses, connection type, which side dialed) is the inner
connection's, passed through here once.
"""

from __future__ import annotations

from typing import Any

from libp2p.abc import IRawConnection

__all__ = ["RawConnectionWrapper"]


class RawConnectionWrapper(IRawConnection):
    """A raw connection that passes everything through to ``inner``; subclasses change reads or writes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.is_initiator = getattr(inner, "is_initiator", False)

    async def read(self, n: int | None = None) -> bytes:
        return await self._inner.read(n)

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
