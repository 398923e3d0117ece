"""``/v1/dht``: values, provider records and peer lookups.

Keys are the user part of ``/agentp2p/<key>`` (the node adds the
namespace). A value that is not found is a 404; a query the network could
not answer in time is a 504.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import (
    encode_payload,
    parse_peer_id,
    payload,
    query_int,
    query_str,
    read_json_object,
    require_str,
)
from agentp2p.application.api.context import context
from agentp2p.application.api.errors import bad_request, not_found
from agentp2p.application.api.routing import route

MAX_KEY = 512
_SMALL_BODY = 16 * 1024


def _key(text: str) -> str:
    if not text.strip("/"):
        raise bad_request("DHT key must contain something besides '/'")
    return text


def _peer_info(info: object) -> dict[str, object]:
    return {"peer_id": str(info.peer_id), "addrs": [str(a) for a in info.addrs]}  # type: ignore[attr-defined]


async def get_value(request: Request) -> JSONResponse:
    node = context(request).node
    key = _key(query_str(request, "key", max_len=MAX_KEY))
    value = await node.dht_get(key)
    if value is None:
        raise not_found(f"no value found for key {key!r}")
    return JSONResponse({"key": key, **encode_payload(value, "value", "value_b64")})


async def put_value(request: Request) -> JSONResponse:
    ctx = context(request)
    limit = ctx.node.config.dht.max_value_size
    body = await read_json_object(request, limit * 2 + _SMALL_BODY, {"key", "value", "value_b64"})
    key = _key(require_str(body, "key", max_len=MAX_KEY))
    value = payload(body, "value", "value_b64", limit)
    if not value:
        raise bad_request("DHT value must not be empty (peers refuse to store an empty value)")
    stored = await ctx.node.dht_put(key, value)
    return JSONResponse({"key": key, "size": len(value), "stored": stored})


async def provide(request: Request) -> JSONResponse:
    ctx = context(request)
    body = await read_json_object(request, _SMALL_BODY, {"key"})
    key = _key(require_str(body, "key", max_len=MAX_KEY))
    await ctx.node.provide(key)
    return JSONResponse({"key": key, "provided": True})


async def find_providers(request: Request) -> JSONResponse:
    node = context(request).node
    key = _key(query_str(request, "key", max_len=MAX_KEY))
    count = query_int(request, "count", 20, 1, 100)
    providers = await node.find_providers(key, count)
    return JSONResponse({"key": key, "providers": [_peer_info(p) for p in providers]})


async def find_peer(request: Request) -> JSONResponse:
    node = context(request).node
    peer_id = parse_peer_id(request.path_params["peer_id"])
    info = await node.find_peer(peer_id)
    if info is None:
        raise not_found(f"peer {peer_id} not found in the DHT")
    return JSONResponse(_peer_info(info))


ROUTES = [
    route("/dht/value", GET=get_value, PUT=put_value),
    route("/dht/providers", GET=find_providers, POST=provide),
    route("/dht/peers/{peer_id}", GET=find_peer),
]
