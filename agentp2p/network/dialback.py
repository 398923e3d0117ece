"""Dial an address and prove who answers, without keeping the connection.

AutoNAT's server must find out whether a peer is reachable at an address.
Our ordinary dialer cannot tell: the peer asked over a connection we
already have, so a dial would just reuse it. This opens a *new* raw
connection through the host's own transport for the address, runs the
security handshake (the private network layer first, when the node is in
one, then Noise), which proves the answerer holds the peer's key, and
closes it. No muxer, no swarm entry, no identify: nothing on our side
outlives the call, and the peer's side sees a connection that ends right
after the handshake (its inbound gate closes such a socket without
blaming anyone).
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

__all__ = ["DialBackError", "dial_back"]


class DialBackError(Exception):
    """The address did not answer as the peer within the deadline."""


async def dial_back(host: Any, peer: ID, addr: Multiaddr, timeout: float) -> None:
    """Connect to ``peer`` at ``addr`` anew and finish the security handshake;
    :class:`DialBackError` if that fails or takes longer than ``timeout``."""
    swarm = host.get_network()
    transport = swarm.transport_manager.transport_for_dialing(addr)
    if transport is None:
        raise DialBackError(f"no transport dials {addr}")
    raw = secured = None
    try:
        with trio.fail_after(timeout):
            raw = await transport.dial(Multiaddr(f"{addr}/p2p/{peer}"))
            secured = await swarm.upgrader.upgrade_security(raw, True, peer)
    except trio.TooSlowError:
        raise DialBackError(f"{addr}: no handshake within {timeout:g}s") from None
    except Exception as exc:  # noqa: BLE001 — whatever the dial or handshake raised, it failed
        raise DialBackError(f"{addr}: {type(exc).__name__}: {exc}") from None
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            for conn in (secured, raw):
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
