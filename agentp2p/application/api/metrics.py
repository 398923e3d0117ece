"""``GET /metrics``: the node's Prometheus metrics, behind the API token.

Built only when metrics are on (``[api] metrics``, ``--metrics``): the app
imports this module lazily, so a daemon without metrics never imports
``prometheus_client`` (the daemon's lean import even stubs it then).

The path is ``/metrics`` — outside ``/v1`` — because that is where every
Prometheus scrape config looks by default; the bearer token is the API's
own, which Prometheus sends with ``authorization: {credentials_file: ...}``
(docs/operations.md). Each node gets a registry of its own (not the
process-wide default one), so two nodes in one process never mix their
series: the node's collector plus the process, platform and GC collectors
(``process_*``, ``python_*``) that describe the daemon itself.
"""

from __future__ import annotations

from typing import Any

from agentp2p import _lean_import
from agentp2p.errors import ConfigError

if _lean_import.is_stub("prometheus_client"):
    # The process stubbed it (lean import) before metrics were asked for:
    # say so now rather than fail at the first scrape.
    raise ConfigError(
        "metrics need prometheus_client, which this process stubbed out (agentp2p._lean_import); "
        "start the daemon with --metrics (or [api] metrics = true) so that it is kept"
    )

try:
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
    from prometheus_client.exposition import choose_encoder
except ImportError as exc:  # pragma: no cover - it is a dependency
    raise ConfigError(f"metrics need the prometheus_client package ({exc}); pip install prometheus-client") from None

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from agentp2p.application.api.routing import route
from agentp2p.application.metrics.collector import NodeCollector

__all__ = ["METRICS_PATH", "metrics_registry", "metrics_routes"]

METRICS_PATH = "/metrics"


def metrics_registry(node: Any) -> CollectorRegistry:
    """A registry that reads ``node`` at each collection (and the process it runs in)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def metrics_routes(node: Any) -> list[BaseRoute]:
    """The ``/metrics`` route for ``node`` (mounted at the app's root, behind the token)."""
    registry = metrics_registry(node)

    async def metrics(request: Request) -> Response:
        # Prometheus asks for OpenMetrics in its Accept header; curl gets the text format.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    return [route(METRICS_PATH, GET=metrics)]
