"""Server-sent events: the API's streaming format (each stream also speaks
WebSocket at the same path: :mod:`agentp2p.application.api.websocket`).

SSE is plain HTTP, so asyncio, trio, synchronous scripts and ``curl -N`` all
read it with an ordinary HTTP client. Each event is a JSON object in one
``data:`` line. A comment line goes out every ``heartbeat`` seconds when
nothing else does, so dead clients are noticed (the write fails) and idle
proxies keep the connection open.

:class:`EventStream` is an ASGI response that runs a *producer* coroutine
in the request's own task, with a watcher that cancels it when the client
disconnects. Nothing runs as an async generator suspended across ``yield``,
so the producer's ``async with`` blocks (a pub/sub subscription, say) always
close in the task that opened them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from agentp2p.application.api.context import ApiContext
from agentp2p.application.api.errors import ApiError
from agentp2p.application.api.websocket import stream_over_websocket

EventSender = Callable[[str, dict[str, Any]], Awaitable[None]]
Producer = Callable[[EventSender], Awaitable[None]]


def encode_event(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def event_stream(ctx: ApiContext, producer: Producer) -> EventStream:
    """An event stream for a handler to return, or 429 if too many are open.

    Every streaming endpoint (subscriptions now; incoming messages and
    membership events later) goes through here, so they share one limit.
    """
    if ctx.open_streams >= ctx.limits.max_streams:
        raise ApiError(429, "too_many_requests", f"at most {ctx.limits.max_streams} event streams may be open")
    return EventStream(producer, heartbeat=ctx.limits.heartbeat, ctx=ctx)


class EventStream:
    """ASGI response streaming the events ``producer`` sends."""

    media_type = "text/event-stream"

    def __init__(self, producer: Producer, *, heartbeat: float = 15.0, ctx: ApiContext | None = None) -> None:
        self.producer = producer
        self.heartbeat = heartbeat
        self.ctx = ctx

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.ctx is not None:
            self.ctx.open_streams += 1
        try:
            if scope["type"] == "websocket":
                await stream_over_websocket(self.producer, receive, send)
            else:
                await self._stream(receive, send)
        finally:
            if self.ctx is not None:
                self.ctx.open_streams -= 1

    async def _stream(self, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        lock = trio.Lock()  # the heartbeat and the producer share one socket
        counter = 0
        last_write = trio.current_time()

        async def write(chunk: bytes) -> None:
            nonlocal last_write
            async with lock:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                last_write = trio.current_time()

        async def send_event(event: str, data: dict[str, Any]) -> None:
            nonlocal counter
            counter += 1
            await write(encode_event(event, data, counter))

        async def watch_disconnect(cancel: trio.CancelScope) -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    cancel.cancel()
                    return

        async def heartbeats() -> None:
            while True:
                await trio.sleep_until(last_write + self.heartbeat)
                if trio.current_time() >= last_write + self.heartbeat:
                    await write(b": keepalive\n\n")

        # A client that goes away is noticed by the watcher (hypercorn turns
        # the closed socket into http.disconnect and ignores later sends).
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, nursery.cancel_scope)
            nursery.start_soon(heartbeats)
            await self.producer(send_event)
            nursery.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
