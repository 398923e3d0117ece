"""WebSocket streaming beside server-sent events (issue #16).

Every event stream of the API — a topic's messages, incoming direct
messages, requests to answer, membership changes — can also be read over a
WebSocket, at the same path with the same query: ``ws://HOST:PORT/v1/pubsub/subscribe?topic=T``.
Same authentication as the rest of the API (``Authorization: Bearer``
on the upgrade request; a dashboard session for what the dashboard reads),
same producers, same limit on open streams. Why: some environments speak
WebSocket more easily than SSE (browsers' ``WebSocket`` with no polyfill,
gateways that buffer ``text/event-stream``), and a WebSocket carries binary
frames and pings without HTTP chunking in between.

Each event is one text frame, a JSON object ``{"event": NAME, "id": N,
"data": {...}}`` — the SSE event's three fields. Frames the client sends are
read and ignored (acknowledgements and replies stay ``POST`` requests, as
with SSE), so a chatty client cannot fill a buffer. The stream ends with a
close frame: 1000 when the producer is done, 1011 if it failed. A request
the handler refuses (bad query, unknown topic state, too many streams,
service off) is accepted and closed at once with code ``4000 + the HTTP
status`` (4400, 4409, 4429, 4503...) and the error as the reason, so a
client learns why; a missing or wrong token is refused at the upgrade (HTTP
403, the ASGI rule for a close before accept). Idle connections are kept
alive by hypercorn's pings (``websocket_ping_interval``, the SSE heartbeat).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from agentp2p.application.api.errors import NODE_ERRORS, ApiError

__all__ = ["CLOSE_NORMAL", "CLOSE_FAILED", "close_code", "stream_over_websocket", "websocket_route"]

log = logging.getLogger("agentp2p.api")

CLOSE_NORMAL = 1000
CLOSE_FAILED = 1011  # "internal error" in RFC 6455 terms: the producer raised
_REFUSED_BASE = 4000  # + the HTTP status the same request would have had
_MAX_REASON = 123  # bytes: what fits in a close frame

EventSender = Callable[[str, dict[str, Any]], Awaitable[None]]
Producer = Callable[[EventSender], Awaitable[None]]


def close_code(status: int) -> int:
    """The close code a WebSocket gets for a request HTTP would answer with ``status``."""
    return _REFUSED_BASE + status


def _reason(text: str) -> str:
    data = text.encode("utf-8")[:_MAX_REASON]
    return data.decode("utf-8", "ignore")


def encode_frame(event: str, data: dict[str, Any], event_id: int) -> str:
    return json.dumps({"event": event, "id": event_id, "data": data}, separators=(",", ":"))


async def stream_over_websocket(producer: Producer, receive: Any, send: Any) -> None:
    """Accept the WebSocket, send what ``producer`` produces, then close."""
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    counter = 0
    gone = False

    async def send_event(event: str, data: dict[str, Any]) -> None:
        nonlocal counter
        counter += 1
        await send({"type": "websocket.send", "text": encode_frame(event, data, counter)})

    async def watch_disconnect(cancel: trio.CancelScope) -> None:
        nonlocal gone
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                gone = True
                cancel.cancel()
                return
            # websocket.receive: the client's frames mean nothing here.

    code = CLOSE_NORMAL
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, nursery.cancel_scope)
            await producer(send_event)
            nursery.cancel_scope.cancel()
    except Exception as exc:  # noqa: BLE001 — the stream ends, the daemon does not
        log.info("WebSocket event stream failed: %r", exc)
        code = CLOSE_FAILED
    if not gone:
        await send({"type": "websocket.close", "code": code})


async def _refuse(receive: Any, send: Any, status: int, message: str) -> None:
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": close_code(status), "reason": _reason(message)})


def _status_of(exc: Exception) -> tuple[int, str] | None:
    if isinstance(exc, ApiError):
        return exc.status, f"{exc.code}: {exc.message}"
    for exc_type, status, code in NODE_ERRORS:
        if isinstance(exc, exc_type):
            return status, f"{code}: {exc}"
    return None


class _WebSocketEndpoint:
    """The ASGI app of one WebSocket route (a class: starlette would wrap a function)."""

    def __init__(self, path: str, handler: Callable[[Any], Awaitable[Any]]) -> None:
        self.path = path
        self.handler = handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        connection = WebSocket(scope, receive, send)  # query, path parameters and app, as a Request has
        try:
            stream = await self.handler(connection)
        except Exception as exc:  # noqa: BLE001 — refused like the HTTP answer would be
            known = _status_of(exc)
            if known is None:
                log.error("internal error opening WebSocket %s: %r", self.path, exc)
                known = (500, "internal_error: see the daemon's log")
            await _refuse(receive, send, *known)
            return
        await stream(scope, receive, send)


def websocket_route(path: str, handler: Callable[[Any], Awaitable[Any]]) -> WebSocketRoute:
    """The WebSocket twin of an event-stream route: ``handler`` is the SSE
    route's own, given the connection instead of the request; the event
    stream it returns notices the WebSocket scope and speaks WebSocket."""
    return WebSocketRoute(path, _WebSocketEndpoint(path, handler))
