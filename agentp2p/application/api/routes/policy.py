"""``/v1/policy`` and ``/v1/certificates``: the authorization policy in force,
replaced at run time, and the membership certificates this node presents;
``/v1/peers/{peer_id}/groups``: what a peer proved of its groups.

A policy change takes effect for the next decision and lasts until the
daemon stops (keep lasting ones in the config). A document that does not
check is a ``400`` naming the part that is wrong, and the old policy stays.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import check_query, parse_peer_id, read_json_object, require_str
from agentp2p.application.api.context import context
from agentp2p.application.api.errors import bad_request
from agentp2p.application.api.routing import route
from agentp2p.security.certificates import CertificateError
from agentp2p.security.policy import PolicyError

#: A policy of 256 rules naming peers by ID fits easily.
_POLICY_BODY = 1024 * 1024
#: A certificate's text at most (the schema's maxLength; a real one is
#: under 3,000 characters). The body may be larger, so that an over-long one,
#: even of escaped non-ASCII (12 bytes a character), is a 400 that says so.
_CERT_TEXT = 4096
_CERT_BODY = 16 * _CERT_TEXT


async def get_policy(request: Request) -> JSONResponse:
    node = context(request).node
    return JSONResponse({"policy": node.policy().to_dict(), "stats": node.authorizer.stats()})


async def put_policy(request: Request) -> JSONResponse:
    node = context(request).node
    body = await read_json_object(request, _POLICY_BODY, {"policy"})
    doc = body.get("policy")
    if not isinstance(doc, dict):
        raise bad_request("'policy' must be an object: {default, groups, rules}")
    try:
        policy = node.set_policy(doc)
    except PolicyError as exc:
        raise bad_request(str(exc)) from None
    return JSONResponse({"policy": policy.to_dict()})


async def list_certificates(request: Request) -> JSONResponse:
    node = context(request).node
    return JSONResponse({"certificates": [c.describe() for c in node.certificates()]})


async def add_certificate(request: Request) -> JSONResponse:
    node = context(request).node
    body = await read_json_object(request, _CERT_BODY, {"certificate"})
    text = require_str(body, "certificate", max_len=_CERT_TEXT)
    try:
        cert = node.add_certificate(text)
    except CertificateError as exc:
        raise bad_request(str(exc)) from None
    return JSONResponse({"certificate": cert.describe()})


async def peer_groups(request: Request) -> JSONResponse:
    """May dial the peer to ask it (bounded by the fetch timeout); ``?refresh=1`` asks again."""
    check_query(request, {"refresh"})
    node = context(request).node
    peer_id = parse_peer_id(request.path_params["peer_id"])
    refresh = request.query_params.get("refresh", "0") not in ("0", "false", "")
    return JSONResponse(await node.peer_groups(peer_id, refresh=refresh))


ROUTES = [
    route("/policy", GET=get_policy, PUT=put_policy),
    route("/certificates", GET=list_certificates, POST=add_certificate),
    route("/peers/{peer_id}/groups", GET=peer_groups),
]
