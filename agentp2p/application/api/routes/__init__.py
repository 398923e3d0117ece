"""The core routes, one module per area; every path is under ``/v1``.

Services add their own routes (see ``ApiRoutes`` in ``app.py``) rather than
editing these modules, and their paths to ``openapi.json``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from agentp2p.application.api.routes import dht, node, peers, pubsub


def core_routes() -> list[BaseRoute]:
    return [*node.ROUTES, *peers.ROUTES, *pubsub.ROUTES, *dht.ROUTES]
