"""``/v1/members``: the SWIM membership view and its changes.

Answers ``503 service_unavailable`` when the node runs without the ``swim``
service. The event stream starts with a ``members`` snapshot, then one event
per change (``joined``, ``suspect``, ``failed``, ``left``, ``recovered``).
The service buffers events per listener and drops (and counts) rather than
slow the protocol down; ``GET /v1/members`` is always the current truth to
re-sync from.
"""

from __future__ import annotations

from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import check_query
from agentp2p.application.api.context import ApiContext, context
from agentp2p.application.api.errors import bad_request, service_unavailable
from agentp2p.application.api.routing import route
from agentp2p.application.api.sse import EventSender, EventStream, event_stream

LIVE_STATES = ("alive", "suspect")
ALL_STATES = ("alive", "suspect", "dead", "left")


def _swim(ctx: ApiContext) -> Any:
    svc = ctx.node.services.get("swim")
    if svc is None:
        raise service_unavailable("membership (SWIM)", "SWIM is off in this daemon's config (swim = false); remove that or pass --swim")
    return svc


def member_json(m: Any, now: float) -> dict[str, Any]:
    return {
        "peer_id": str(m.peer_id),
        "state": m.state,
        "incarnation": m.incarnation,
        "addrs": [str(a) for a in m.addrs],
        "since_s": round(max(0.0, now - m.since), 3),
    }


def _states(request: Request) -> tuple[str, ...]:
    check_query(request, {"state"})
    wanted = request.query_params.getlist("state")
    if not wanted:
        return LIVE_STATES
    bad = sorted(set(wanted) - set(ALL_STATES))
    if bad:
        raise bad_request(f"unknown state(s) {', '.join(map(repr, bad))}; use {', '.join(ALL_STATES)}")
    return tuple(wanted)


def _snapshot(ctx: ApiContext, svc: Any, states: tuple[str, ...]) -> dict[str, Any]:
    now = trio.current_time()
    members = sorted((m for m in svc.members() if m.state in states), key=lambda m: str(m.peer_id))
    return {
        "peer_id": str(ctx.node.peer_id),
        "incarnation": svc.incarnation,
        "members": [member_json(m, now) for m in members],
    }


async def list_members(request: Request) -> JSONResponse:
    ctx = context(request)
    svc = _swim(ctx)
    return JSONResponse(_snapshot(ctx, svc, _states(request)))


def event_json(ev: Any) -> dict[str, Any]:
    return {
        "peer_id": str(ev.peer_id),
        "incarnation": ev.incarnation,
        "previous": ev.previous,
        "addrs": [str(a) for a in ev.addrs],
    }


async def member_events(request: Request) -> EventStream:
    ctx = context(request)
    svc = _swim(ctx)

    async def produce(send: EventSender) -> None:
        async with svc.events() as events:
            # Listening before the snapshot: a change made in between is in
            # both (harmless), never in neither.
            await send("members", _snapshot(ctx, svc, ALL_STATES))
            async for ev in events:
                await send(ev.kind, event_json(ev))

    return event_stream(ctx, produce)


ROUTES = [
    route("/members", GET=list_members),
    route("/members/events", GET=member_events),
]
