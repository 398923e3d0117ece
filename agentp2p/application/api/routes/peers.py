"""``/v1/peers``: connections, dialing, hanging up, ping and identify; and
``/v1/peers/denied`` and ``/v1/peers/allowed``, the node's deny and allow lists.

Operations on one peer require an open connection (404 otherwise): the API
never dials implicitly, so "is this peer connected?" has one answer.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

from libp2p.connection_types import ConnectionType
from libp2p.peer.id import ID
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import parse_peer_id, read_json_object, require_str
from agentp2p.application.api.context import context
from agentp2p.application.api.errors import conflict, not_found
from agentp2p.application.api.routing import route
from agentp2p.network.allowlist import AllowListFull, AllowListOff
from agentp2p.network.denylist import DenyListFull

_SMALL_BODY = 16 * 1024


def _connections(node: Any, peer_id: ID) -> list[dict[str, Any]]:
    out = []
    for conn in node.host.get_network().get_connections(peer_id):
        entry: dict[str, Any] = {"direction": "unknown", "remote_addrs": []}
        with contextlib.suppress(Exception):
            entry["direction"] = conn.direction.name.lower()
        with contextlib.suppress(Exception):
            entry["remote_addrs"] = [str(a) for a in conn.get_transport_addresses()]
        with contextlib.suppress(Exception):
            entry["streams"] = len(conn.get_streams())
        with contextlib.suppress(Exception):
            entry["relayed"] = conn.get_connection_type() is ConnectionType.RELAYED
        out.append(entry)
    return out


def _peer_entry(node: Any, peer_id: ID) -> dict[str, Any]:
    trust = node.trust_of(peer_id)
    return {
        "peer_id": str(peer_id),
        "connections": _connections(node, peer_id),
        "trust": {"score": trust["score"], "level": trust["level"]},
    }


def _connected_peer(request: Request) -> ID:
    node = context(request).node
    peer_id = parse_peer_id(request.path_params["peer_id"])
    if not node.is_connected(peer_id):
        raise not_found(f"not connected to {peer_id}")
    return peer_id


async def list_peers(request: Request) -> JSONResponse:
    node = context(request).node
    banned = [
        {"peer_id": str(b.peer), "remaining_s": round(b.remaining, 1), "reason": b.reason, "offences": b.offences}
        for b in sorted(node.penalties.banned(), key=lambda b: str(b.peer))
    ]
    return JSONResponse({"peers": [_peer_entry(node, p) for p in sorted(node.peers(), key=str)], "banned": banned})


async def connect(request: Request) -> JSONResponse:
    ctx = context(request)
    body = await read_json_object(request, _SMALL_BODY, {"addr"})
    addr = require_str(body, "addr", max_len=1024)
    peer_id = await ctx.node.connect(addr)  # AddressError -> 400, DialError -> 502
    return JSONResponse(_peer_entry(ctx.node, peer_id))


async def peer_details(request: Request) -> JSONResponse:
    node = context(request).node
    peer_id = _connected_peer(request)
    entry = _peer_entry(node, peer_id)
    ident = await node.identify(peer_id)
    entry["agent_version"] = ident.agent_version
    entry["protocol_version"] = ident.protocol_version
    entry["protocols"] = sorted(ident.protocols)
    entry["listen_addrs"] = ident.listen_addrs
    return JSONResponse(entry)


async def disconnect(request: Request) -> JSONResponse:
    node = context(request).node
    peer_id = _connected_peer(request)
    await node.disconnect(peer_id)
    return JSONResponse({"peer_id": str(peer_id), "disconnected": True})


async def ping(request: Request) -> JSONResponse:
    node = context(request).node
    peer_id = _connected_peer(request)
    rtt = await node.ping(peer_id)
    return JSONResponse({"peer_id": str(peer_id), "rtt_ms": round(rtt * 1000, 3)})


async def list_denied(request: Request) -> JSONResponse:
    node = context(request).node
    return JSONResponse({"denied": sorted(str(p) for p in node.denied())})


async def _change(
    request: Request, change: Callable[[Any, ID], Any], field: str, value: bool, refusals: tuple[type[Exception], ...] = ()
) -> JSONResponse:
    """One peer on or off one of the lists: ``{"peer_id", field: value, "changed"}``;
    a refusal of the list (full, off) is a 409 and changes nothing."""
    node = context(request).node
    peer_id = parse_peer_id(request.path_params["peer_id"])
    try:
        result = change(node, peer_id)
        if inspect.isawaitable(result):
            result = await result
    except refusals as exc:
        raise conflict(str(exc)) from None
    return JSONResponse({"peer_id": str(peer_id), field: value, "changed": bool(result)})


async def deny(request: Request) -> JSONResponse:
    """Refuse the peer from now on, and close what is open to it."""
    return await _change(request, lambda node, peer: node.deny(peer), "denied", True, (DenyListFull,))


async def allow(request: Request) -> JSONResponse:
    return await _change(request, lambda node, peer: node.allow(peer), "denied", False)


async def allow_all(request: Request) -> JSONResponse:
    node = context(request).node
    return JSONResponse({"allowed": sorted(str(p) for p in node.allow())})


async def list_allowed(request: Request) -> JSONResponse:
    node = context(request).node
    allowed = node.allowed()
    return JSONResponse({"allow_only": allowed is not None, "allowed": sorted(str(p) for p in allowed or [])})


async def add_allowed(request: Request) -> JSONResponse:
    """Admit the peer; 409 when the list is off (only the config turns it on) or full."""
    return await _change(request, lambda node, peer: node.add_allowed(peer), "allowed", True, (AllowListOff, AllowListFull))


async def remove_allowed(request: Request) -> JSONResponse:
    """Stop admitting the peer, and close what is open to it; 409 when the list is off."""
    return await _change(request, lambda node, peer: node.remove_allowed(peer), "allowed", False, (AllowListOff,))


ROUTES = [
    route("/peers", GET=list_peers, POST=connect),
    # Before /peers/{peer_id}, which would take "denied" for a (bad) peer ID.
    route("/peers/denied", GET=list_denied, DELETE=allow_all),
    route("/peers/denied/{peer_id}", PUT=deny, DELETE=allow),
    route("/peers/allowed", GET=list_allowed, shadows=("DELETE",)),
    route("/peers/allowed/{peer_id}", PUT=add_allowed, DELETE=remove_allowed),
    route("/peers/{peer_id}", GET=peer_details, DELETE=disconnect),
    route("/peers/{peer_id}/ping", POST=ping),
]
