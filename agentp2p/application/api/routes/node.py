"""``/v1/node``: who this node is; ``/v1/openapi.json``: what this API is."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p import __version__
from agentp2p.application.api.context import context
from agentp2p.application.api.routing import route
from agentp2p.network.host import AGENT_VERSION

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"


async def node_info(request: Request) -> JSONResponse:
    node = context(request).node
    protocols: list[str] = []
    try:
        protocols = sorted(str(p) for p in node.host.get_mux().get_protocols() if p)
    except Exception:  # noqa: BLE001 — introspection only
        pass
    started = node.started_at
    return JSONResponse(
        {
            "peer_id": str(node.peer_id),
            "addrs": node.dialable_addrs(),
            "listen_addrs": [str(a) for a in node.listen_addrs],
            "agent_version": AGENT_VERSION,
            "version": __version__,
            "protocols": protocols,
            "uptime_s": 0.0 if started is None else round(time.monotonic() - started, 3),
        }
    )


async def node_stats(request: Request) -> JSONResponse:
    return JSONResponse(context(request).node.stats())


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
    return doc


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


ROUTES = [
    route("/node", GET=node_info),
    route("/node/stats", GET=node_stats),
    route("/openapi.json", GET=openapi),
]
