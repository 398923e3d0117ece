"""``/v1/records``: this agent's capability record, and finding other agents.

Every node can find agents and fetch their records. ``/v1/records/self``
answers ``503 service_unavailable`` when the node publishes no record of its
own (a daemon publishes one with ``--agent-name`` or ``--agent-card``). Records are shown as JSON (below) and, on request, as
A2A Agent Cards (``record_to_agent_card``). ``PUT /v1/records/self`` takes
either the record's fields or an A2A card (``{"card": {...}}``), re-signs
the record and runs a publish round before answering; parts of the round
that failed are retried by the service in the background.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import check_query, parse_peer_id, query_int, query_str, read_json_object
from agentp2p.application.api.context import ApiContext, context
from agentp2p.application.api.errors import ApiError, bad_request, not_found, service_unavailable
from agentp2p.application.api.routing import route
from agentp2p.application.records.a2a import card_fields, record_to_agent_card
from agentp2p.application.records.errors import InvalidRecord
from agentp2p.application.records.model import AgentRecord, Capability

MAX_CAPABILITY = 128
MAX_TAG = 64
MAX_TAGS = 32
_RECORD_BODY = 256 * 1024  # a record is at most 48 KiB encoded; room for JSON escaping

_CAPABILITY_TEXT = {"name", "version", "title", "description"}
_CAPABILITY_LISTS = {"tags", "examples", "input_modes", "output_modes"}
_CAPABILITY_OBJECTS = {"input_schema": "input_schema_json", "output_schema": "output_schema_json", "extra": "extra_json"}


def _records(ctx: ApiContext) -> Any:
    svc = ctx.node.services.get("records")
    if svc is None:
        raise service_unavailable("capability records", "this node runs without a records service")
    return svc


def _own_records(ctx: ApiContext) -> Any:
    """The records service of a node that publishes its own record."""
    svc = _records(ctx)
    if not getattr(svc, "publishes", True):
        raise service_unavailable(
            "this agent's record", "start the daemon with --agent-name NAME (or --agent-card FILE)"
        )
    return svc


def capability_json(cap: Capability) -> dict[str, Any]:
    return {
        "name": cap.name,
        "version": cap.version,
        "title": cap.title,
        "description": cap.description,
        "tags": list(cap.tags),
        "examples": list(cap.examples),
        "input_modes": list(cap.input_modes),
        "output_modes": list(cap.output_modes),
        "input_schema": cap.input_schema,
        "output_schema": cap.output_schema,
        "extra": json.loads(cap.extra_json) if cap.extra_json else None,
    }


def record_json(record: AgentRecord) -> dict[str, Any]:
    return {
        "peer_id": str(record.peer_id),
        "name": record.name,
        "description": record.description,
        "addrs": [str(a) for a in record.addrs],
        "capabilities": [capability_json(c) for c in record.capabilities],
        "metadata": dict(record.metadata),
        "seq": record.seq,
        "issued_at_ms": record.issued_at_ms,
        "expires_at_ms": record.expires_at_ms,
    }


def _with_card(record: AgentRecord) -> dict[str, Any]:
    return {"record": record_json(record), "card": record_to_agent_card(record)}


def _query_bool(request: Request, key: str) -> bool:
    values = request.query_params.getlist(key)
    if not values:
        return False
    if len(values) > 1 or values[0] not in ("true", "false", "1", "0"):
        raise bad_request(f"query parameter {key!r} must be true or false (once)")
    return values[0] in ("true", "1")


# -- this agent's record ---------------------------------------------------------------


async def get_self(request: Request) -> JSONResponse:
    svc = _own_records(context(request))
    record = svc.record
    if record is None:
        raise ApiError(503, "service_unavailable", "the record is not signed yet (the node is starting)")
    return JSONResponse(_with_card(record))


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{where} must be a string")
    return value


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{where} must be a list of strings")
    return tuple(value)


def _capability(index: int, value: Any) -> Capability:
    where = f"capabilities[{index}]"
    if isinstance(value, str):
        return Capability(name=value)
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be a capability name or an object")
    unknown = sorted(set(value) - _CAPABILITY_TEXT - _CAPABILITY_LISTS - set(_CAPABILITY_OBJECTS))
    if unknown:
        raise bad_request(f"{where}: unknown field(s): {', '.join(unknown)}")
    if "name" not in value:
        raise bad_request(f"{where} needs a 'name'")
    kwargs: dict[str, Any] = {}
    for key in _CAPABILITY_TEXT & set(value):
        kwargs[key] = _string(f"{where}.{key}", value[key])
    for key in _CAPABILITY_LISTS & set(value):
        kwargs[key] = _strings(f"{where}.{key}", value[key])
    for key, attr in _CAPABILITY_OBJECTS.items():
        if value.get(key) is not None:
            if not isinstance(value[key], dict):
                raise bad_request(f"{where}.{key} must be a JSON object")
            kwargs[attr] = json.dumps(value[key], separators=(",", ":"), ensure_ascii=False)
    return Capability(**kwargs)


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_request("'metadata' must be an object of strings")
    return dict(value)


async def put_self(request: Request) -> JSONResponse:
    ctx = context(request)
    svc = _own_records(ctx)
    body = await read_json_object(request, _RECORD_BODY, {"name", "description", "capabilities", "metadata", "card"})
    fields: dict[str, Any] = {}
    if "card" in body:
        if len(body) > 1:
            raise bad_request("give either 'card' (an A2A Agent Card) or the record's fields, not both")
        try:
            name, description, caps, metadata = card_fields(body["card"])
        except InvalidRecord as exc:
            raise bad_request(f"not a usable A2A Agent Card: {exc.detail}") from None
        fields = {"name": name, "description": description, "capabilities": caps, "metadata": metadata}
    else:
        if not body:
            raise bad_request("nothing to change: give name, description, capabilities, metadata or card")
        if "name" in body:
            fields["name"] = _string("'name'", body["name"])
        if "description" in body:
            fields["description"] = _string("'description'", body["description"])
        if "capabilities" in body:
            caps_in = body["capabilities"]
            if not isinstance(caps_in, list):
                raise bad_request("'capabilities' must be a list")
            fields["capabilities"] = [_capability(i, c) for i, c in enumerate(caps_in)]
        if "metadata" in body:
            fields["metadata"] = _metadata(body["metadata"])
    if svc.record is None:
        raise ApiError(503, "service_unavailable", "the record is not signed yet (the node is starting)")
    try:
        record = await svc.update(**fields)
    except InvalidRecord as exc:
        raise bad_request(f"invalid record: {exc.detail}") from None
    return JSONResponse(_with_card(record))


# -- other agents --------------------------------------------------------------------


def _liveness_name(value: Any) -> str:
    return str(getattr(value, "name", value)).lower()


async def find_agents(request: Request) -> JSONResponse:
    ctx = context(request)
    svc = _records(ctx)
    check_query(request, {"capability", "tag", "limit", "card"})
    capability = query_str(request, "capability", max_len=MAX_CAPABILITY)
    tags = request.query_params.getlist("tag")
    if len(tags) > MAX_TAGS or not all(0 < len(t) <= MAX_TAG for t in tags):
        raise bad_request(f"at most {MAX_TAGS} 'tag' parameters, each 1..{MAX_TAG} characters")
    limit = query_int(request, "limit", 10, 1, 100)
    with_card = _query_bool(request, "card")
    ranked = await svc.find_agents(capability, tags, limit)
    agents = []
    for agent in ranked:
        entry: dict[str, Any] = {
            "peer_id": str(agent.record.peer_id),
            "name": agent.record.name,
            "liveness": _liveness_name(agent.liveness),
            "rtt_ms": None if agent.rtt_ms is None else round(agent.rtt_ms, 3),
            "capability": capability_json(agent.capability),
            "record": record_json(agent.record),
        }
        if with_card:
            entry["card"] = record_to_agent_card(agent.record)
        agents.append(entry)
    return JSONResponse({"capability": capability, "tags": tags, "agents": agents})


async def get_record(request: Request) -> JSONResponse:
    ctx = context(request)
    svc = _records(ctx)
    peer = parse_peer_id(request.path_params["peer_id"])
    check_query(request, {"fresh"})
    fresh = _query_bool(request, "fresh")
    record = await svc.get_record(peer, fresh=fresh)
    if record is None:
        raise not_found(f"no record found for {peer} (not in the cache, the agent did not answer, not in the DHT)")
    return JSONResponse(_with_card(record))


ROUTES = [
    route("/records", GET=find_agents),
    route("/records/self", GET=get_self, PUT=put_self),  # before {peer_id}: "self" is not a peer ID
    route("/records/{peer_id}", GET=get_record),
]
