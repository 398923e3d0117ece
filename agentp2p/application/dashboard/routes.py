"""The dashboard's routes: its page and files, login and logout, and the two
views the ``/v1`` API has no endpoint for (the records this node knows, and
the network graph).

Everything else the page shows it reads from the ordinary API (``/v1/node``,
``/v1/node/stats``, ``/v1/peers``, ``/v1/members`` and its event stream,
``/v1/pubsub/topics``, ``/v1/pubsub/peers``), with the session cookie the
gate (:mod:`agentp2p.application.dashboard.gate`) accepts in place of the
token for those reads.

* ``GET /dashboard/`` — the page (``static/index.html``);
* ``GET /dashboard/static/NAME`` — its script, graph code and style (a fixed list of files);
* ``POST /dashboard/login-code`` — token only: a one-time login URL for a browser;
* ``GET /dashboard/login?code=`` — a page with a *Log in* button that posts the code back
  (a link prefetch, a preview or a ``HEAD`` spends nothing);
* ``POST /dashboard/login`` (form field ``code``) — redeems it: sets the session cookie, then the page;
* ``POST /dashboard/logout`` — ends this browser's session;
* ``GET /dashboard/api/records`` — this agent's record and the records it has cached;
* ``GET /dashboard/api/network`` — the network as this node sees it, as a graph (:mod:`.view`).

This module and its imports stay clear of the node's stack (no libp2p): the
devnet's controller serves these routes without running a node.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from agentp2p.application.api.context import context
from agentp2p.application.api.routing import route
from agentp2p.application.dashboard.gate import (
    LOGIN_PATH,
    LOGOUT_PATH,
    SECURITY_HEADERS,
    cookie_name,
    message_page,
    session_cookie,
)
from agentp2p.application.dashboard.sessions import Sessions
from agentp2p.application.dashboard.view import node_view

__all__ = ["STATIC_FILES", "dashboard_routes", "static_file"]

#: The files served under /dashboard/static/ (nothing else is, whatever the path says).
STATIC_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "graph.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
#: Records listed by /dashboard/api/records (the cache holds up to 4096).
MAX_RECORDS = 500
#: A login form's body: one code (43 characters) and its field name, with room to spare.
MAX_LOGIN_BODY = 1024


def static_file(name: str) -> bytes:
    """A file shipped in ``agentp2p/application/dashboard/static`` (package data)."""
    return resources.files("agentp2p.application.dashboard").joinpath("static", name).read_bytes()


def _asset(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(404, f"no dashboard file {name!r}")
    # no-cache: the browser revalidates, so a daemon upgrade shows its new page.
    return Response(static_file(name), media_type=STATIC_FILES[name], headers={**_HEADERS, "cache-control": "no-cache"})


NetworkView = Callable[[Request], Awaitable[dict[str, Any]]]


def dashboard_routes(
    sessions: Sessions, *, clock: Callable[[], float] = time.monotonic, network: NetworkView | None = None
) -> list[BaseRoute]:
    """The dashboard's routes (mounted at the app's root, behind the token or a session).

    ``network`` replaces the node's own view of the network (and drops the
    node-only records view): how ``agentp2p devnet --dashboard`` serves the
    same page about a whole network it runs.
    """

    async def page(request: Request) -> Response:
        return _asset("index.html")

    async def to_page(request: Request) -> Response:
        return RedirectResponse("/dashboard/", status_code=307)

    async def asset(request: Request) -> Response:
        return _asset(request.path_params["name"])

    async def login_code(request: Request) -> JSONResponse:
        host = request.headers.get("host", "")
        if not host or host == "agentp2p":
            message = "a browser cannot reach this daemon's API (a Unix socket); start it with --api HOST:PORT"
            return JSONResponse({"error": "bad_request", "message": message}, status_code=400)
        code = sessions.issue_code(clock())
        path = f"{LOGIN_PATH}?code={code}"
        return JSONResponse(
            {"url": f"http://{host}{path}", "path": path, "expires_s": sessions.limits.code_ttl},
            headers={"cache-control": "no-store"},
        )

    headers = {**_HEADERS, "cache-control": "no-store"}

    def not_valid() -> HTMLResponse:
        text = (
            "This login link is not valid: it was used already, it expired (links last "
            f"{sessions.limits.code_ttl:.0f} s), or the daemon restarted. Run <code>agentp2p dashboard</code> "
            "for a new one."
        )
        return HTMLResponse(message_page("agentp2p dashboard: link expired", text), status_code=401, headers=headers)

    async def login_form(request: Request) -> Response:
        # Spends nothing: browsers, mail clients and chat previews fetch links
        # (prefetch, HEAD) before anyone clicks. The button posts the code.
        code = request.query_params.get("code", "")
        if not code or not sessions.code_pending(code, clock()):
            return not_valid()
        form = (
            f'<form method="post" action="{LOGIN_PATH}"><input type="hidden" name="code" value="{html.escape(code)}">'
            '<button type="submit" id="log-in" autofocus>Log in</button></form>'
        )
        return HTMLResponse(message_page("agentp2p dashboard: log in", "Open the dashboard of this daemon.", form),
                            headers=headers)

    async def login(request: Request) -> Response:
        body = await request.body()
        fields = parse_qs(body.decode("ascii", "replace")) if len(body) <= MAX_LOGIN_BODY else {}
        code = (fields.get("code") or [""])[0]
        session = sessions.redeem(code, clock()) if code else None
        if session is None:
            return not_valid()
        # Post/redirect/get: the dashboard loads from a navigation our own
        # page started, so the SameSite=Strict cookie goes with it.
        response = RedirectResponse("/dashboard/", status_code=303, headers=headers)
        response.set_cookie(
            cookie_name(request.scope),
            session,
            max_age=int(sessions.limits.session_ttl),
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request) -> JSONResponse:
        session = session_cookie(request.scope)
        ended = sessions.end(session) if session else False
        response = JSONResponse({"logged_out": ended})
        response.delete_cookie(cookie_name(request.scope), path="/", httponly=True, samesite="strict")
        return response

    async def records(request: Request) -> JSONResponse:
        return JSONResponse(known_records(context(request).node))

    async def own_network(request: Request) -> JSONResponse:
        return JSONResponse(node_view(context(request).node))

    async def other_network(request: Request) -> JSONResponse:
        assert network is not None
        return JSONResponse(await network(request))

    routes = [
        route("/dashboard", GET=to_page),
        route("/dashboard/", GET=page),
        route("/dashboard/static/{name}", GET=asset),
        route("/dashboard/login-code", POST=login_code),
        route(LOGIN_PATH, GET=login_form, POST=login),
        route(LOGOUT_PATH, POST=logout),
    ]
    if network is None:
        routes += [route("/dashboard/api/records", GET=records), route("/dashboard/api/network", GET=own_network)]
    else:
        routes.append(route("/dashboard/api/network", GET=other_network))
    return routes


def known_records(node: Any) -> dict[str, Any]:
    """This agent's record (None if it publishes none) and the records in
    its cache (verified, unexpired), by name; ``records`` false when the
    node runs no records service."""
    from agentp2p.application.api.routes.records import record_json
    from agentp2p.application.records.validator import wall_clock_ms

    svc = node.services.get("records")
    if svc is None:
        return {"records": False, "self": None, "known": [], "truncated": False}
    own = svc.record if getattr(svc, "publishes", False) else None
    entries = sorted(svc.cache.entries(wall_clock_ms()), key=lambda e: (e.record.name, str(e.record.peer_id)))
    return {
        "records": True,
        "self": record_json(own) if own is not None else None,
        "known": [record_json(e.record) for e in entries[:MAX_RECORDS]],
        "truncated": len(entries) > MAX_RECORDS,
    }

