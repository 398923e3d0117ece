"""The ASGI application: core routes, routes contributed by services, auth.

Extending the API
-----------------
A node service (messaging, membership, records...) adds endpoints by having
an ``api_routes(self) -> Sequence[starlette.routing.BaseRoute]`` method; the
API service collects them from every service on the node when it starts and
mounts them under ``/v1`` next to the core routes, behind the same token.
Build them with ``routing.route("/messages", POST=send)`` (one route per
path, so 405 answers list every method). Handlers reach the node with
``context.context(request).node`` and use ``body.py`` (bounded JSON,
base64/text payloads, peer IDs), ``errors.py`` (``ApiError``; node errors
map to statuses in ``NODE_ERRORS``) and ``sse.py`` (``EventStream`` for
incoming messages or membership events, counted against
``ApiLimits.max_streams`` like subscriptions). The new paths go into
``openapi.json``: ``tests/api/test_api_openapi.py`` fails until the route
table and the document agree, and the fuzz test then covers them.

Prometheus metrics (``metrics=True``) are outside ``/v1``: ``GET
/metrics``, where scrapers look by default, behind the same token, and
present only when asked for (``api/metrics.py``, imported only then). So is
the dashboard (``dashboard=True``): its page under ``/dashboard/``, and a
gate that lets a logged-in browser read what the page shows
(``agentp2p.application.dashboard``, imported only then).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from agentp2p.application.api.auth import BearerAuth
from agentp2p.application.api.context import ApiContext, ApiLimits
from agentp2p.application.api.errors import exception_handlers
from agentp2p.application.api.routes import core_routes

API_PREFIX = "/v1"

# Room for the largest pub/sub message base64-encoded (4/3) plus the JSON around it.
_ENVELOPE = 64 * 1024


@runtime_checkable
class ApiRoutes(Protocol):
    """A service that contributes endpoints (see module doc)."""

    def api_routes(self) -> Sequence[BaseRoute]: ...


def service_routes(node: Any) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for service in getattr(node, "services", {}).values():
        if isinstance(service, ApiRoutes):
            routes.extend(service.api_routes())
    return routes


def build_app(
    node: Any,
    token: str,
    *,
    limits: ApiLimits | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    metrics: bool = False,
    dashboard: bool = False,
) -> BearerAuth:
    """The complete API for ``node``, refusing requests without ``token``;
    with ``metrics``, also ``GET /metrics`` (Prometheus); with
    ``dashboard``, the web page under ``/dashboard/`` and its browser sessions."""
    limits = limits or ApiLimits()
    max_body = limits.max_body
    if max_body is None:
        max_body = node.config.pubsub.max_message_size * 4 // 3 + _ENVELOPE
    routes = [*core_routes(), *service_routes(node), *extra_routes]
    top: list[BaseRoute] = [Mount(API_PREFIX, routes=routes)]
    if metrics:
        from agentp2p.application.api.metrics import metrics_routes

        top.extend(metrics_routes(node))
    gate = None
    if dashboard:
        from agentp2p.application.dashboard import dashboard as dashboard_parts

        dashboard_routes, gate = dashboard_parts()
        top.extend(dashboard_routes)
    app = Starlette(routes=top, exception_handlers=exception_handlers())
    app.state.api = ApiContext(node=node, limits=limits, max_body=max_body)
    return BearerAuth(app, token, gate=gate)
