"""The API token: how it is stored, and the middleware that demands it.

Every request must carry ``Authorization: Bearer <token>``. The token lives
in a mode-0600 file next to the identity key, so exactly the users who could
steal the node's identity can drive it; binding to loopback keeps other
machines out, and the token keeps other local users (and web pages making
requests to localhost) out.

The token is kept across restarts so long-running agent programs survive a
daemon restart. A token file that group or others can read is treated as
leaked and replaced. Creation is race-free (write a private temp file, then
``link`` it into place, which fails if another daemon got there first), so
two daemons sharing a home directory agree on one token.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Protocol

from agentp2p.errors import ConfigError

log = logging.getLogger("agentp2p.api")

_TOKEN_BYTES = 32


def generate_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


def _read_private_token(path: Path) -> str | None:
    """The token in ``path`` if the file is a private regular file holding one."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"API token file {path} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("API token file %s is readable by others (mode %o); replacing the token", path, stat.S_IMODE(st.st_mode))
        return None
    token = path.read_text().strip()
    return token if len(token) >= 16 else None


def load_or_create_token(path: Path) -> str:
    """The token stored at ``path``, creating (or replacing an unsafe) one."""
    path = path.expanduser()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Decide "replace" from the file we judged, not from a second look: a
        # file another daemon links in between must be kept, not overwritten
        # (two daemons starting together then ended with different tokens).
        replace = os.path.lexists(path)
        existing = _read_private_token(path)
        if existing is not None:
            return existing
        # Replace only a file we judged unsafe or malformed; if there was none,
        # link, so that a token another daemon created meanwhile is kept.
        token = generate_token()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(tmp, path)  # an unsafe or malformed file: ours wins
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    # Another daemon created it meanwhile: use theirs.
                    return load_or_create_token(path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return token
    except OSError as exc:
        raise ConfigError(f"cannot create API token file {path}: {exc.strerror}") from None


def _unauthorized(message: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"error": "unauthorized", "message": message}).encode()
    start = {
        "type": "http.response.start",
        "status": 401,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="agentp2p"'),
        ],
    }
    return start, body


class Gate(Protocol):
    """Another way in, for requests without the token (the dashboard's
    browser sessions: ``agentp2p.application.dashboard.gate``)."""

    def admits(self, scope: dict[str, Any]) -> bool: ...

    def refusal(self, scope: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
        """The answer to a request neither the token nor the gate admits, or
        None for the API's JSON 401."""
        ...


class BearerAuth:
    """Pure ASGI middleware: refuse any HTTP request without the right bearer token.

    Pure ASGI (not Starlette's BaseHTTPMiddleware) so event streams pass
    through untouched. The comparison is constant-time. A ``gate`` may
    admit some requests without the token (and word some refusals).
    """

    def __init__(self, app: Any, token: str, *, gate: Gate | None = None) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()
        self.gate = gate

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        supplied = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                supplied = value
                break
        if hmac.compare_digest(supplied, self._expected):
            await self.app(scope, receive, send)
            return
        gate = self.gate
        if not supplied and gate is not None and gate.admits(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        answer = gate.refusal(scope) if gate is not None else None
        if answer is not None:
            await send(answer[0])
            await send({"type": "http.response.body", "body": answer[1]})
            return
        message = "missing API token" if not supplied else "wrong API token"
        start, body = _unauthorized(
            f"{message}: send 'Authorization: Bearer <token>' (the token is in api.token next to the daemon's identity)"
        )
        await send(start)
        await send({"type": "http.response.body", "body": body})
