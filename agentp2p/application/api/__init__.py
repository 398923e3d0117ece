"""The daemon's local control API (HTTP + JSON, server-sent events), issue #7.

``ApiService`` serves it from the node's trio loop; ``build_app`` is the
ASGI application; ``openapi.json`` beside this file is its contract. See
``docs/api.md``.

The names below are imported on first use (PEP 562), not with the package:
a program that needs one small module of it — the token middleware, say,
as ``agentp2p devnet --dashboard`` does — does not load the node's whole
stack (py-libp2p) through the routes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentp2p.application.api.app import API_PREFIX, ApiRoutes, build_app
    from agentp2p.application.api.context import ApiLimits
    from agentp2p.application.api.server import ApiService

__all__ = ["API_PREFIX", "ApiLimits", "ApiRoutes", "ApiService", "build_app"]

_WHERE = {
    "API_PREFIX": "app",
    "ApiRoutes": "app",
    "build_app": "app",
    "ApiLimits": "context",
    "ApiService": "server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
