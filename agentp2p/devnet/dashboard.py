"""``agentp2p devnet --dashboard``: the dashboard's page about the whole devnet.

The controller serves the same page a daemon does
(:mod:`agentp2p.application.dashboard`), with the network view replaced by
the whole devnet (:func:`agentp2p.devnet.graph.devnet_view`): every node,
every connection, every mesh link on the devnet topic, and the nodes'
states as the controller knows them (up, paused, killed, failed) — watch a
``partition`` cut the graph in two and ``heal`` join it again.

Access works as for a daemon, without a token file: the controller prints a
one-time login link on its console when it starts (the ``dashboard``
command prints another), and the browser holds a session cookie. The API
token exists only in this process's memory, so nothing but a link opens
the page. The workers are asked for their graph at most every
:data:`GRAPH_EVERY` seconds, however many browsers watch.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Protocol

import trio

from agentp2p.application.api.auth import BearerAuth, generate_token
from agentp2p.application.dashboard.gate import LOGIN_PATH, DashboardGate
from agentp2p.application.dashboard.routes import dashboard_routes
from agentp2p.application.dashboard.sessions import Sessions
from agentp2p.client.discovery import ApiAddress, parse_api_address


class NetworkSource(Protocol):
    """What the dashboard needs of the devnet controller: the whole network, now."""

    async def network_view(self) -> dict[str, Any]: ...

__all__ = ["DEFAULT_LISTEN", "GRAPH_EVERY", "DevnetDashboard"]

DEFAULT_LISTEN = "127.0.0.1:0"
#: Seconds a graph answer is reused: the workers' cost does not grow with browsers.
GRAPH_EVERY = 1.5


class DevnetDashboard:
    """The devnet's dashboard server (run in the controller's nursery)."""

    def __init__(self, devnet: NetworkSource, listen: str = DEFAULT_LISTEN) -> None:
        self.devnet = devnet
        self.requested = parse_api_address(listen)
        if self.requested.is_unix:
            raise ValueError("--dashboard needs HOST:PORT: a browser cannot open a Unix socket")
        self.sessions = Sessions()
        self.address: ApiAddress | None = None
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = trio.Lock()

    def login_url(self) -> str:
        """A fresh one-time login link (the console prints it; nothing logs it)."""
        if self.address is None:
            raise RuntimeError("the dashboard is not listening yet")
        return f"{self.address.base_url}{LOGIN_PATH}?code={self.sessions.issue_code(time.monotonic())}"

    async def network(self, request: Any) -> dict[str, Any]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= GRAPH_EVERY:
                self._cached = (now, await self.devnet.network_view())
            return self._cached[1]

    def _bind(self) -> socket.socket:
        host, port = self.requested.host or "127.0.0.1", self.requested.port or 0
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        bound_host, bound_port = sock.getsockname()[:2]
        self.address = ApiAddress(host=bound_host, port=bound_port)
        return sock

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report started (then :meth:`login_url` works), serve until cancelled."""
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.trio import serve
        from starlette.applications import Starlette

        sock = self._bind()
        # Starlette's own error answers: the API's (api/errors.py) would import the node's stack.
        app = Starlette(routes=dashboard_routes(self.sessions, network=self.network))
        # The token is this process's secret: only login links open the page.
        guarded = BearerAuth(app, generate_token(), gate=DashboardGate(self.sessions))
        config = HypercornConfig()
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        server_log = logging.getLogger("agentp2p.devnet.dashboard")
        server_log.setLevel(logging.WARNING)
        config.errorlog = server_log
        config.include_server_header = False
        config.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, guarded, config)
            task_status.started()
