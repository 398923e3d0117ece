"""The API as a node service: hypercorn's trio worker on the node's own loop.

``Node(config, services=[ApiService(...)])`` serves the API from the
node's nursery, so handlers call the node directly (no threads, no second
event loop) and the API stops with the node.

The socket is bound in :meth:`ApiService.attach`, when the node is built:
an explicitly requested address that is taken fails the daemon before it
joins the network, with a one-line :class:`ListenError`. Only when the
caller allows it (the daemon's *default* address) does a taken port fall
back to an OS-chosen one — clients find the daemon through ``api.addr``
either way.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.routing import BaseRoute

from agentp2p.application.api.app import build_app
from agentp2p.application.api.auth import generate_token, load_or_create_token
from agentp2p.application.api.context import ApiContext, ApiLimits
from agentp2p.client.discovery import ApiAddress, parse_api_address
from agentp2p.errors import ConfigError, ListenError
from agentp2p.network.listen import bind_error_reason

log = logging.getLogger("agentp2p.api")

#: Largest message a WebSocket client may send; a larger one closes the socket (1009).
WEBSOCKET_MAX_MESSAGE = 4 * 1024


def _bind(address: ApiAddress) -> socket.socket:
    if address.unix_path is not None:
        path = Path(address.unix_path).expanduser()
        with contextlib.suppress(FileNotFoundError):
            if path.is_socket():
                path.unlink()  # a stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)  # the socket file is created 0600
            try:
                sock.bind(str(path))
                sock.listen(128)
            finally:
                os.umask(old)
        except OSError:
            sock.close()
            raise
        return sock
    family = socket.AF_INET6 if address.host and ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        # Listen now: with SO_REUSEADDR two daemons starting together could
        # both bind a port nobody listens on yet, and the second would only
        # fail later inside hypercorn, past our fallback.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class ApiService:
    """Serves the control API for the node it is attached to.

    ``listen``: ``HOST:PORT`` or ``unix:/path`` (default: loopback, any port).
    ``token``/``token_file``: the bearer token, given or kept in a 0600 file;
    with neither, a fresh token lives only in :attr:`token`.
    ``addr_file``: written with the bound address once serving, removed on stop.
    ``fallback``: if ``listen`` is taken, bind the same host on any port.
    ``metrics``: serve Prometheus metrics at ``/metrics``; None follows the
    node's ``config.api.metrics`` (how the daemon turns it on).
    ``dashboard``: serve the dashboard under ``/dashboard/``; None follows
    ``config.api.dashboard``.
    """

    name = "api"

    def __init__(
        self,
        listen: str = "127.0.0.1:0",
        *,
        token: str | None = None,
        token_file: Path | None = None,
        addr_file: Path | None = None,
        fallback: bool = False,
        limits: ApiLimits | None = None,
        extra_routes: Sequence[BaseRoute] = (),
        metrics: bool | None = None,
        dashboard: bool | None = None,
    ) -> None:
        try:
            self.requested = parse_api_address(listen)
        except ValueError as exc:
            raise ConfigError(f"--api: {exc}") from None
        self._token = token
        self.token_file = token_file
        self.addr_file = addr_file
        self.fallback = fallback
        self.limits = limits or ApiLimits()
        self.extra_routes = list(extra_routes)
        self.metrics = metrics
        self.dashboard = dashboard
        self.address: ApiAddress | None = None  # what we actually bound
        self.ready = trio.Event()
        self.context: ApiContext | None = None  # set when serving (open streams etc.)
        self._sock: socket.socket | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            raise RuntimeError("the API token exists once the service is attached")
        return self._token

    @property
    def base_url(self) -> str:
        if self.address is None:
            raise RuntimeError("the API is not bound yet")
        return self.address.base_url

    # -- NodeService --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "address": str(self.address) if self.address is not None else None,
            "ready": self.ready.is_set(),
            "metrics": bool(self.metrics),
            "dashboard": bool(self.dashboard),
        }

    def attach(self, ctx: Any) -> None:
        if self._token is None:
            self._token = load_or_create_token(self.token_file) if self.token_file else generate_token()
        self._sock, self.address = self._bind_with_fallback()
        if not self.address.is_loopback():
            log.warning(
                "the control API listens on %s, which is not a loopback address: anyone who "
                "obtains the token can control this node, over plain HTTP",
                self.address,
            )

    def _bind_with_fallback(self) -> tuple[socket.socket, ApiAddress]:
        want = self.requested
        try:
            sock = _bind(want)
        except OSError as exc:
            if self.fallback and exc.errno == errno.EADDRINUSE and not want.is_unix:
                log.warning("API address %s is in use; using another port (see api.addr)", want)
                sock = _bind(ApiAddress(host=want.host, port=0))
            else:
                raise ListenError(f"cannot listen for the API on {want}: {bind_error_reason(exc)}") from None
        if want.is_unix:
            return sock, want
        host, port = sock.getsockname()[:2]
        return sock, ApiAddress(host=host, port=port)

    async def run(self, ctx: Any) -> None:
        """Serve the API over the whole node: the control API is the one
        service that uses the public facade (``ctx.facade``, the
        :class:`~agentp2p.node.Node`) rather than the narrow contract."""
        sock, address = self._sock, self.address
        if sock is None or address is None:
            raise RuntimeError("ApiService.run before attach")
        self._sock = None
        node = getattr(ctx, "facade", None) or ctx
        api_config = getattr(getattr(node, "config", None), "api", None)
        if self.metrics is None:
            self.metrics = bool(getattr(api_config, "metrics", False))
        if self.dashboard is None:
            self.dashboard = bool(getattr(api_config, "dashboard", False))
        app = build_app(
            node,
            self.token,
            limits=self.limits,
            extra_routes=self.extra_routes,
            metrics=self.metrics,
            dashboard=self.dashboard,
        )
        self.context = app.app.state.api
        config = HypercornConfig()
        # Hypercorn takes ownership of the already-bound socket.
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        # Hypercorn's own info lines ("Running on ...") repeat ours; keep its warnings.
        server_log = logging.getLogger("agentp2p.api.server")
        server_log.setLevel(logging.WARNING)
        config.errorlog = server_log
        config.include_server_header = False
        config.graceful_timeout = 1.0
        # WebSocket event streams: pings play the part of SSE's keepalive comments.
        config.websocket_ping_interval = self.limits.heartbeat
        # Clients send nothing the streams read (they only watch for the close):
        # no need to buffer hypercorn's default 16 MiB per message from them.
        config.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, app, config)
                self._announce(address)
        finally:
            self._withdraw(address)

    def _announce(self, address: ApiAddress) -> None:
        if self.addr_file is not None:
            tmp = self.addr_file.with_name(f".{self.addr_file.name}.{os.getpid()}")
            tmp.write_text(f"{address}\n")
            os.replace(tmp, self.addr_file)
        log.info("control API listening on %s", address)
        if self.dashboard and not address.is_unix:
            # The page's address only: a login link is a credential, so it
            # goes to whoever runs `agentp2p dashboard`, never to the log.
            log.info("dashboard at %s/dashboard/ (log in with: agentp2p dashboard)", address.base_url)
        self.ready.set()

    def _withdraw(self, address: ApiAddress) -> None:
        if self.addr_file is not None:
            with contextlib.suppress(OSError):
                if self.addr_file.read_text().strip() == str(address):
                    self.addr_file.unlink()
        if address.unix_path is not None:
            with contextlib.suppress(OSError):
                Path(address.unix_path).expanduser().unlink()
