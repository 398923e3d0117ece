"""Ask a connected peer for its identify record ourselves, when the library's attempt was lost.

py-libp2p 0.8.1 runs identify once per new connection, in a background task
that gives up silently: it waits at most 5 s for the connection to be
"started", and reads the answer for at most 10 s. On a busy process (a
node joining a network of a hundred, on a shared core) both happen, and
the peer's protocols then never reach the peerstore for the life of the
connection. Services that decide by protocol (the DHT lets only peers
that serve Kademlia into its routing table) would treat such a peer as
unable to serve forever: in a 30-node benchmark, nodes were left with
three live connections and an empty routing table, and others with 11 of
25 connections identified.

:func:`request_identify` runs the same exchange again over the existing
connection (never dials), bounded in time and bytes, and records the answer
the way the library does (``update_peerstore_from_identify``: the public
key must hash to the peer ID, signed peer records are checked).
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.identity.update import update_peerstore_from_identify
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from multiaddr import Multiaddr

__all__ = ["IdentifyError", "MAX_IDENTIFY_BYTES", "observed_ip", "push_identify", "read_to_eof", "request_identify"]

#: Largest identify answer we read (go's are a few KiB; the library allows 1,000 addresses).
MAX_IDENTIFY_BYTES = 256 * 1024


class IdentifyError(Exception):
    """The peer's identify answer did not come, was too large, or did not parse."""


async def request_identify(dialer: Any, host: Any, peer: ID, timeout: float) -> list[str]:
    """Run identify with ``peer`` over its open connection; its protocols.

    The peerstore is updated as the library's own identify would; raises
    :class:`IdentifyError` (or the dialer's DialError when no connection is
    open) on failure, and ``timeout`` bounds the whole exchange.
    """
    msg = await _exchange(dialer, host, peer, timeout)
    return [str(p) for p in msg.protocols]


async def observed_ip(dialer: Any, host: Any, peer: ID, timeout: float) -> str | None:
    """The IP ``peer`` sees our connection come from (identify's observed
    address, asked afresh over the open connection); None if it did not say.

    Behind a NAT this is the NAT's public address: what a hole punch needs.
    """
    msg = await _exchange(dialer, host, peer, timeout)
    if not msg.observed_addr:
        return None
    try:
        ma = Multiaddr(msg.observed_addr)
        for name in ("ip4", "ip6"):
            with contextlib.suppress(Exception):
                return str(ma.value_for_protocol(name))
    except Exception:  # noqa: BLE001 — the peer's bytes
        return None
    return None


async def _exchange(dialer: Any, host: Any, peer: ID, timeout: float) -> Any:
    """One identify exchange over the open connection, recorded in the peerstore."""
    try:
        with trio.fail_after(timeout):
            stream = await dialer.open_stream(peer, [str(IDENTIFY_PROTOCOL)], dial=False, lookup=False,
                                              timeout=timeout)
            try:
                data = await read_to_eof(stream, MAX_IDENTIFY_BYTES)
            except BaseException:
                with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
                    await stream.reset()
                raise
            with contextlib.suppress(Exception):
                await stream.close()
    except trio.TooSlowError:
        raise IdentifyError(f"identify {peer} timed out after {timeout:g}s") from None
    try:
        msg = parse_identify_response(data)
    except Exception as exc:  # noqa: BLE001 — the peer's bytes
        raise IdentifyError(f"identify {peer}: unreadable answer ({exc})") from None
    await update_peerstore_from_identify(host.get_peerstore(), peer, msg)
    return msg


async def read_to_eof(stream: Any, limit: int, error: type[Exception] = IdentifyError) -> bytes:
    """Everything the peer writes before closing (py-libp2p signals EOF by
    raising), refusing more than ``limit`` bytes with ``error``."""
    data = b""
    while True:
        try:
            chunk = await stream.read(65536)
        except StreamEOF:
            return data
        if not chunk:
            return data
        data += chunk
        if len(data) > limit:
            raise error(f"answer over {limit} bytes")


def push_identify(host: Any, nursery: trio.Nursery | None, timeout: float = 30.0) -> None:
    """Tell every connected peer, in the background, that our protocols or
    addresses changed (identify push; py-libp2p bounds its fan-out)."""
    if nursery is None:
        return

    async def push() -> None:
        from libp2p.identity.identify_push.identify_push import push_identify_to_peers

        with trio.move_on_after(timeout), contextlib.suppress(Exception):
            await push_identify_to_peers(host)

    nursery.start_soon(push)
