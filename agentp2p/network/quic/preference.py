"""TCP first: a node with QUIC on dials a peer's TCP address when it has one.

py-libp2p's swarm ranks QUIC above TCP (as go-libp2p does, where QUIC is
the faster transport). Here our TCP stack (Noise, our Yamux) is the faster
one by far (docs/reachability.md, "QUIC": half the acknowledged messages
per second over QUIC, a fiftieth of the bulk throughput), so turning QUIC on
must not move every connection to a peer that also listens on QUIC onto it.

:func:`prefer_tcp` wraps the swarm's ``dial_peer``: when the peer has both a
TCP and a QUIC address, it dials with QUIC addresses hidden from the swarm's
connection gate (a context variable, so only that dial sees it); if that
fails, or takes longer than :data:`TCP_FIRST` (a TCP address that drops
SYNs silently would otherwise use up the whole dial), it clears the swarm's
negative cache for the peer and dials again with everything, QUIC included.
The variable names the dialing task: tasks the dial starts (a connection's
stream handlers) inherit the context and must not see QUIC hidden.
"""

from __future__ import annotations

import contextvars
from typing import Any

import trio
from multiaddr import Multiaddr

from agentp2p.network.quic import is_quic

#: The task whose dial hides QUIC addresses (None: no such dial).
_AVOID_QUIC: contextvars.ContextVar[object] = contextvars.ContextVar("agentp2p_avoid_quic", default=None)
#: How long the TCP-only attempt may take before QUIC is tried too.
TCP_FIRST = 3.0


def _names(addr: Multiaddr) -> set[str]:
    return {p.name for p in addr.protocols()}


def _is_plain_tcp(addr: Multiaddr) -> bool:
    names = _names(addr)
    return "tcp" in names and not names & {"ws", "wss", "p2p-circuit"}


def prefer_tcp(swarm: Any) -> None:
    """Install on ``swarm`` (idempotent)."""
    if getattr(swarm, "_agentp2p_prefer_tcp", False):
        return
    gate = swarm.connection_gate
    is_allowed = gate.is_allowed
    dial_peer = swarm.dial_peer

    async def gated(addr: Multiaddr) -> bool:
        if _AVOID_QUIC.get() is trio.lowlevel.current_task() and is_quic(addr):
            return False
        return await is_allowed(addr)

    async def dial(peer_id: Any) -> Any:
        try:
            addrs = swarm.peerstore.addrs(peer_id)
        except Exception:  # noqa: BLE001 — no addresses: the swarm says so below
            addrs = []
        if any(map(is_quic, addrs)) and any(map(_is_plain_tcp, addrs)):
            token = _AVOID_QUIC.set(trio.lowlevel.current_task())
            try:
                with trio.move_on_after(TCP_FIRST):
                    return await dial_peer(peer_id)
            except Exception:  # noqa: BLE001 — TCP failed: QUIC may still get through
                pass
            finally:
                _AVOID_QUIC.reset(token)
            swarm.unblock_peer(peer_id)
        return await dial_peer(peer_id)

    gate.is_allowed = gated
    swarm.dial_peer = dial
    swarm._agentp2p_prefer_tcp = True
