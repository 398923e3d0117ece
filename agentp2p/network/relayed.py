"""A stream of one connection used as the byte pipe of another: relayed connections.

A circuit (circuit relay v2) is a stream on our connection to the relay
that carries a whole connection to a third peer, with its own Noise and
Yamux. :func:`adopt_outbound` and :func:`adopt_inbound` run those
upgrades and register the result with the swarm, so every service sees a
relayed peer like any other.

The pipe reports **no remote address**: the relay's IP is not the peer's.
So AutoNAT servers refuse requests over it (no IP to dial back, as the
spec requires), per-IP admission does not count circuits against the
relay, and identify reports no observed address.
"""

from __future__ import annotations

from typing import Any

import trio

from libp2p.connection_types import ConnectionType
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.network.closing import is_open
from agentp2p.network.inbound import inbound_gate

__all__ = ["RelayedPipe", "adopt_inbound", "adopt_outbound", "relayed_connections"]

#: Seconds a circuit's graceful close may take, and then its reset.
_CLOSE_GRACE = 0.5


class RelayedPipe:
    """The ReadWriteCloser the upgrades run over: a relay stream without an address."""

    connection_type = ConnectionType.RELAYED

    def __init__(self, stream: Any, addr: Multiaddr) -> None:
        self._stream = stream
        self.addr = addr
        self.addresses = [addr]

    async def read(self, n: int | None = None) -> bytes:
        # As a TCP socket reads (py-libp2p's io/trio.py): b"" at the end,
        # ConnectionClosedError on a reset, so Noise and the muxer see a
        # circuit end the way they see a socket end.
        try:
            return await self._stream.read(n)
        except StreamEOF:
            return b""
        except StreamError as exc:
            raise ConnectionClosedError(f"relayed connection ended: {exc!r}", transport="circuit") from exc

    async def write(self, data: bytes) -> None:
        await self._stream.write(data)

    async def close(self) -> None:
        # The reset frees the circuit at the relay: it runs even when the
        # close stalls or its caller's deadline (a forced close's) runs out.
        try:
            with trio.move_on_after(_CLOSE_GRACE):
                await self._stream.close()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
                await self._stream.reset()

    def get_remote_address(self) -> tuple[str, int] | None:
        return None


async def adopt_outbound(host: Any, stream: Any, peer: ID, addr: Multiaddr) -> None:
    """Run the outbound upgrade (security, muxer) over a circuit to ``peer`` and keep the connection."""
    raw = RawConnection(RelayedPipe(stream, addr), True, ConnectionType.RELAYED, addresses=[addr])
    await host.get_network().upgrade_outbound_raw_conn(raw, peer)


async def adopt_inbound(host: Any, stream: Any, addr: Multiaddr) -> None:
    """Hand a circuit to the node's inbound path (admission, upgrade); returns when it closes."""
    gate = inbound_gate(host)
    pipe = RelayedPipe(stream, addr)
    if gate is None:  # a host built without our gate (tests of the library's own path)
        await host.get_network().upgrade_inbound_raw_conn(RawConnection(pipe, False, ConnectionType.RELAYED), addr)
        return
    await gate.handle(pipe, addr)


def relayed_connections(host: Any, peer: ID) -> list[Any]:
    """Our open connections to ``peer`` that run over a relay."""
    return [c for c in host.get_network().get_connections(peer)
            if is_open(c) and c.get_connection_type() is ConnectionType.RELAYED]
