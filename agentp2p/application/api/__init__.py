"""The daemon's local control API (HTTP + JSON, server-sent events), issue #7.

``ApiService`` serves it from the node's trio loop; ``build_app`` is the
ASGI application; ``openapi.json`` beside this file is its contract. See
``docs/api.md``.
"""

from __future__ import annotations

from agentp2p.application.api.app import API_PREFIX, ApiRoutes, build_app
from agentp2p.application.api.context import ApiLimits
from agentp2p.application.api.server import ApiService

__all__ = ["API_PREFIX", "ApiLimits", "ApiRoutes", "ApiService", "build_app"]
