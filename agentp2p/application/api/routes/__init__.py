"""The core routes, one module per area; every path is under ``/v1``.

Messaging, membership and records are here too, rather than contributed by
their services (``ApiRoutes`` in ``app.py``): their paths are part of the
API whether or not the service runs on this daemon, answering ``503
service_unavailable`` when it does not, so the route table (and the
document) is the same for every daemon.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from agentp2p.application.api.routes import dht, members, messaging, node, peers, policy, pubsub, records, trust
from agentp2p.application.api.websocket import websocket_route


def websocket_routes() -> list[BaseRoute]:
    """Every event stream again as a WebSocket: same path, same handler
    (``agentp2p.application.api.websocket``)."""
    return [
        websocket_route("/pubsub/subscribe", pubsub.subscribe),
        websocket_route("/messages/incoming", messaging.incoming),
        websocket_route("/messages/handle", messaging.handle),
        websocket_route("/members/events", members.member_events),
    ]


def core_routes() -> list[BaseRoute]:
    return [
        *node.ROUTES,
        *peers.ROUTES,
        *policy.ROUTES,
        *trust.ROUTES,
        *pubsub.ROUTES,
        *dht.ROUTES,
        *messaging.ROUTES,
        *members.ROUTES,
        *records.ROUTES,
        *websocket_routes(),
    ]
