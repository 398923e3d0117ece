"""openapi.json is the API's contract: every route is in it, nothing else is, and the daemon serves it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import schemathesis
from starlette.routing import Mount, Route, WebSocketRoute

from agentp2p.application.api import build_app
from agentp2p.application.api.routes.node import OPENAPI_PATH
from agentp2p.config import NodeConfig

from tests.api.api_fixtures import api_node

METHODS = {"get", "put", "post", "delete", "patch"}


def _document() -> dict:
    return json.loads(OPENAPI_PATH.read_text())


def _server_routes() -> tuple[set[tuple[str, str]], set[str]]:
    """HTTP operations, and the paths also served as WebSockets."""
    stub = SimpleNamespace(config=NodeConfig(), services={})
    app = build_app(stub, "token").app
    ops = set()
    websockets = set()
    for mount in app.routes:
        assert isinstance(mount, Mount)
        for route in mount.routes:
            if isinstance(route, WebSocketRoute):
                websockets.add(mount.path + route.path)
                continue
            assert isinstance(route, Route)
            for method in route.methods or ():
                if method != "HEAD":  # starlette answers HEAD for every GET
                    ops.add((method.lower(), mount.path + route.path))
    return ops, websockets


def _documented_operations() -> set[tuple[str, str]]:
    return {(m, path) for path, item in _document()["paths"].items() for m in item if m in METHODS}


def test_every_route_is_documented_and_nothing_else() -> None:
    assert _server_routes()[0] == _documented_operations()


def test_the_websocket_streams_are_the_documented_event_streams() -> None:
    """Each event stream is also a WebSocket at its path (``x-websocket`` in the document)."""
    doc = _document()
    marked = {path for path, item in doc["paths"].items() if item.get("get", {}).get("x-websocket")}
    event_streams = {
        path
        for path, item in doc["paths"].items()
        if "text/event-stream" in item.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
    }
    assert _server_routes()[1] == marked == event_streams


def test_document_is_valid_and_complete() -> None:
    doc = _document()
    schema = schemathesis.openapi.from_dict(doc)  # refuses structurally invalid documents
    assert len(list(schema.get_all_operations())) == len(_documented_operations())
    op_ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            op_ids.append(op["operationId"])
            assert "401" in op["responses"], (method, path)
            assert "200" in op["responses"], (method, path)
            if "requestBody" in op or op.get("parameters") or item.get("parameters"):
                assert "400" in op["responses"], (method, path)
    assert len(op_ids) == len(set(op_ids))
    assert doc["security"] == [{"bearer": []}]


async def test_the_daemon_serves_the_document() -> None:
    async with api_node() as a:
        r = await a.client._http.get("/v1/openapi.json")
        assert r.status_code == 200 and r.json() == _document()
