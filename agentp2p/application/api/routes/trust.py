"""``/v1/trust``: every peer's trust score and why, and operators' pins.

A pin (``trusted``, ``banned``, or ``null`` to unpin) is kept across
restarts; ``banned`` cuts the peer off at once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import parse_peer_id, read_json_object
from agentp2p.application.api.context import context
from agentp2p.application.api.errors import bad_request, conflict
from agentp2p.application.api.routing import route
from agentp2p.security.trust import TrustBookFull

_SMALL_BODY = 4 * 1024


async def list_trust(request: Request) -> JSONResponse:
    node = context(request).node
    return JSONResponse({"peers": node.trust_scores(), "stats": node.trust.stats()})


async def peer_trust(request: Request) -> JSONResponse:
    node = context(request).node
    return JSONResponse(node.trust_of(parse_peer_id(request.path_params["peer_id"])))


async def pin_peer(request: Request) -> JSONResponse:
    node = context(request).node
    peer_id = parse_peer_id(request.path_params["peer_id"])
    body = await read_json_object(request, _SMALL_BODY, {"pin"})
    if "pin" not in body:
        raise bad_request("'pin' is required: \"trusted\", \"banned\" or null")
    pin = body["pin"]
    if pin not in ("trusted", "banned", None):
        raise bad_request("'pin' must be \"trusted\", \"banned\" or null")
    try:
        return JSONResponse(await node.pin(peer_id, pin))
    except TrustBookFull as exc:
        raise conflict(str(exc)) from None


ROUTES = [
    route("/trust", GET=list_trust),
    route("/trust/{peer_id}", GET=peer_trust, PUT=pin_peer),
]
