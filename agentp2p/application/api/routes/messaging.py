"""``/v1/messages``: reliable direct messages, requests, and answering requests.

Sending (``POST /v1/messages``) returns on the receipt the caller asks for
with ``wait``: ``"stored"`` (the default) once the receiving daemon's
durable inbox has the message — it answers for it from then on, across its
own crashes — or ``"consumed"`` once the peer's *application* took it. The
answer carries the receipt and the seconds to each receipt that came. When
the peer is a daemon, its application is whoever reads its
``GET /v1/messages/incoming`` stream, and a message counts as consumed when
that reader acknowledges it with ``POST /v1/messages/ack {"ids": [...]}``.
Until then the message is kept (in the daemon's store, written before the
stream sees it): if the reader's stream closes it goes back to the queue for
the next reader, and if the daemon crashes it is delivered again after the
restart, with the same id (readers deduplicate by id). With no reader
connected, messages wait in the receiving daemon's inbox (bounded per sender
and in total); a send refused because it is full answers ``507 inbox_full``
at once, and one waiting for ``consumed`` ends in ``504 delivery_timeout``
at its ``timeout`` (the message stays stored if it was). Several readers
share the messages: each goes to one of them. ``?auto_ack=true``
acknowledges each message as it is written instead (at-most-once: lost if
the reader dies holding it).

Requests (``POST /v1/messages/request``) wait for the peer's response. A
daemon answers requests of a type only while a program holds the event
stream ``GET /v1/messages/handle?type=T`` open: each request arrives as a
``request`` event with a ``request_id`` that is ours (random, local — never
the id the remote peer chose, so a peer cannot answer or clobber another
peer's request), and the program answers with
``POST /v1/messages/{request_id}/reply``. When the stream closes, pending
requests get an error response at once, and the type has no handler again
(requests for it are refused by the messaging service, as for any type
without a handler).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import (
    check_query,
    encode_payload,
    parse_peer_id,
    payload,
    query_str,
    read_json_object,
)
from agentp2p.application.api.context import ApiContext, context
from agentp2p.application.api.errors import ApiError, bad_request, not_found, service_unavailable
from agentp2p.application.api.routing import route
from agentp2p.application.api.sse import EventSender, EventStream, event_stream

#: Longest application type (the messaging service's own rule: 1..200, no leading "~").
MAX_TYPE = 200
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
#: Room for a sealed box (ephemeral key, nonce, tag, protobuf framing) inside max_message_bytes.
SEAL_OVERHEAD = 128
_ENVELOPE = 64 * 1024
#: How long a taken message may wait for the reader's socket before the stream gives up.
WRITE_GRACE = 30.0
#: Ids in one acknowledgement, and its body size.
MAX_ACK_IDS = 1000
MAX_ACK_BODY = 256 * 1024
_HANDLERS_KEY = "message_handlers"
_PENDING_KEY = "pending_requests"


def _messaging(ctx: ApiContext) -> Any:
    svc = ctx.node.services.get("messaging")
    if svc is None:
        raise service_unavailable("messaging", "the node runs without its messaging service")
    return svc


def _max_payload(svc: Any) -> int:
    return int(svc.config.session.max_message_bytes)


def _body_limit(svc: Any) -> int:
    return _max_payload(svc) * 4 // 3 + _ENVELOPE


def _message_type(value: Any, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TYPE or value.startswith("~"):
        raise bad_request(f"'type' must be 1..{MAX_TYPE} characters, not starting with '~'")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("'type' is not valid Unicode (lone surrogate?)") from None
    return value


def _timeout(value: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request("'timeout' must be a number of seconds")
    if not 0 < value <= MAX_TIMEOUT:
        raise bad_request(f"'timeout' must be more than 0 and at most {MAX_TIMEOUT:g} seconds")
    return float(value)


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise bad_request(f"{key!r} must be true or false")
    return value


#: What ``POST /v1/messages`` waits for unless told (``wait``): the receiving
#: daemon's durable inbox has the message.
DEFAULT_WAIT = "stored"
WAITS = ("stored", "consumed")
_OUTGOING_FIELDS = frozenset({"peer_id", "data", "data_b64", "type", "timeout", "seal"})


def _wait(value: Any) -> str:
    if value is None:
        return DEFAULT_WAIT
    if value not in WAITS:
        raise bad_request("'wait' must be 'stored' or 'consumed'")
    return str(value)


async def _outgoing(
    request: Request, default_type: str, extra: frozenset[str] = frozenset()
) -> tuple[Any, Any, bytes, str, float, bool, dict[str, Any]]:
    """The parsed body of a send or a request: (service, peer, payload, type, timeout, seal, body)."""
    ctx = context(request)
    svc = _messaging(ctx)
    body = await read_json_object(request, _body_limit(svc), set(_OUTGOING_FIELDS | extra))
    peer = parse_peer_id(body.get("peer_id"))
    if peer == ctx.node.peer_id:
        raise bad_request("cannot send a message to this node itself")
    seal = _flag(body, "seal")
    data = payload(body, "data", "data_b64", _max_payload(svc) - (SEAL_OVERHEAD if seal else 0))
    type_ = _message_type(body.get("type"), default_type)
    return svc, peer, data, type_, _timeout(body.get("timeout")), seal, body


async def send(request: Request) -> JSONResponse:
    svc, peer, data, type_, timeout, seal, body = await _outgoing(request, "message", frozenset({"wait"}))
    wait = _wait(body.get("wait"))
    # DeliveryTimeout -> 504, InboxFull -> 507
    receipt = await svc.send_with_receipt(peer, data, type=type_, timeout=timeout, seal=seal, wait=wait)
    return JSONResponse({
        "id": receipt.id,
        "peer_id": str(peer),
        "type": type_,
        "size": len(data),
        "receipt": receipt.status,
        "stored_after": _seconds(receipt.stored_after),
        "consumed_after": _seconds(receipt.consumed_after),
    })


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


async def send_request(request: Request) -> JSONResponse:
    svc, peer, data, type_, timeout, seal, _ = await _outgoing(request, "request")
    response = await svc.request(peer, data, type=type_, timeout=timeout, seal=seal)  # RequestTimeout -> 504
    return JSONResponse({"peer_id": str(peer), "type": type_, **encode_payload(response)})


def message_event(msg: Any) -> dict[str, Any]:
    return {
        "id": msg.id,
        "sender": str(msg.sender),
        "type": msg.type,
        "timestamp": msg.timestamp,
        "sealed": msg.sealed,
        **encode_payload(msg.payload),
    }


def _bool_query(request: Request, key: str) -> bool:
    value = request.query_params.get(key)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise bad_request(f"{key!r} must be 'true' or 'false'")
    return value == "true"


async def incoming(request: Request) -> _Released:
    ctx = context(request)
    svc = _messaging(ctx)
    check_query(request, {"auto_ack"})
    auto_ack = _bool_query(request, "auto_ack")
    owner = object()  # marks the messages this stream took and has not acknowledged

    async def produce(send_event: EventSender) -> None:
        await send_event("ready", {"auto_ack": auto_ack})
        while True:
            # Cancel-safe: a take that is cancelled takes nothing; what was
            # taken and not acknowledged goes back to the queue when the
            # stream ends (release below).
            msg = await svc.take(owner)
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + WRITE_GRACE
                await send_event("message", message_event(msg))
            if scope.cancelled_caught:
                return  # a reader that takes nothing for this long is as good as gone
            if auto_ack:
                svc.ack(msg)

    def release() -> None:
        svc.give_back(owner)

    return _Released(event_stream(ctx, produce), release)


async def ack(request: Request) -> JSONResponse:
    ctx = context(request)
    svc = _messaging(ctx)
    body = await read_json_object(request, MAX_ACK_BODY, {"ids"})
    ids = body.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ACK_IDS or not all(isinstance(i, str) for i in ids):
        raise bad_request(f"'ids' must be a list of 1..{MAX_ACK_IDS} message ids (strings)")
    acked = [i for i in ids if svc.ack(i)]
    return JSONResponse({"acked": acked, "unknown": [i for i in ids if i not in set(acked)]})


# -- answering requests over the API ---------------------------------------------------


@dataclass(eq=False)
class _Pending:
    """One request handed to an API program, waiting for its reply."""

    type: str
    done: trio.Event = field(default_factory=trio.Event)
    result: bytes | None = None
    error: str | None = None
    gone: bool = False  # the answering program disconnected

    def finish(self, result: bytes | None = None, error: str | None = None, *, gone: bool = False) -> bool:
        if self.done.is_set():
            return False
        self.result, self.error, self.gone = result, error, gone
        self.done.set()
        return True


def _pending(ctx: ApiContext) -> dict[str, _Pending]:
    return ctx.extra.setdefault(_PENDING_KEY, {})  # type: ignore[return-value]


def _handled_types(ctx: ApiContext) -> set[str]:
    return ctx.extra.setdefault(_HANDLERS_KEY, set())  # type: ignore[return-value]


class HandlerGone(Exception):
    """What the requester's error says when no program answers any more."""


class ReplyError(Exception):
    """The answering program replied with an error (the text goes to the requester)."""


class _Released:
    """An ASGI response that runs ``release`` however the wrapped one ends
    (even if the client vanished before the stream started)."""

    def __init__(self, inner: EventStream, release: Any) -> None:
        self.inner, self.release = inner, release

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()


async def handle(request: Request) -> _Released:
    ctx = context(request)
    svc = _messaging(ctx)
    check_query(request, {"type"})
    type_ = _message_type(query_str(request, "type", max_len=MAX_TYPE), "")
    handled = _handled_types(ctx)
    # A Python handler set on the node is not replaced behind its back either.
    if type_ in handled or type_ in getattr(svc, "_handlers", {}):
        raise ApiError(409, "conflict", f"requests of type {type_!r} already have a handler")
    pending = _pending(ctx)
    # Requests travel from the messaging service's handler tasks to this
    # stream; unbounded is fine: the service runs at most max_handler_tasks.
    to_stream, from_handlers = trio.open_memory_channel[tuple[str, Any]](math.inf)
    reply_timeout = float(svc.config.reply_timeout)

    async def handler(msg: Any) -> bytes | None:
        request_id = secrets.token_hex(16)
        entry = pending[request_id] = _Pending(type_)
        try:
            try:
                to_stream.send_nowait((request_id, msg))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                entry.finish(gone=True)
            with trio.move_on_after(reply_timeout):
                await entry.done.wait()
        finally:
            pending.pop(request_id, None)
        if not entry.done.is_set():
            raise TimeoutError(f"no reply from the program answering {type_!r} requests within {reply_timeout:g}s")
        if entry.gone:
            raise HandlerGone(f"the program answering {type_!r} requests disconnected")
        if entry.error is not None:
            raise ReplyError(entry.error)
        return entry.result

    def release() -> None:
        if getattr(svc, "_handlers", {}).get(type_, handler) is handler:
            svc.set_handler(type_, None)
        handled.discard(type_)
        to_stream.close()
        for entry in list(pending.values()):
            if entry.type == type_:
                entry.finish(gone=True)

    async def produce(send_event: EventSender) -> None:
        svc.set_handler(type_, handler)
        await send_event("ready", {"type": type_})
        async for request_id, msg in from_handlers:
            await send_event("request", {"request_id": request_id, **message_event(msg)})

    stream = event_stream(ctx, produce)  # 429 before anything is claimed
    handled.add(type_)  # claimed now: a second stream for the type gets 409 at once
    return _Released(stream, release)


async def reply(request: Request) -> JSONResponse:
    ctx = context(request)
    svc = _messaging(ctx)
    request_id = request.path_params["request_id"]
    body = await read_json_object(request, _body_limit(svc), {"data", "data_b64", "error"})
    if "error" in body:
        if "data" in body or "data_b64" in body:
            raise bad_request("give either 'error' or the reply data, not both")
        error = body["error"]
        if not isinstance(error, str) or not error:
            raise bad_request("'error' must be a non-empty string")
        result, error_text = None, error[:4096]
    else:
        result, error_text = payload(body, "data", "data_b64", _max_payload(svc)), None
    entry = _pending(ctx).get(request_id)
    if entry is None or not entry.finish(result, error_text):
        raise not_found(f"no request {request_id!r} is waiting for a reply (answered, timed out, or unknown)")
    return JSONResponse({"request_id": request_id, "replied": True})


ROUTES = [
    route("/messages", POST=send),
    route("/messages/request", POST=send_request),
    route("/messages/incoming", GET=incoming),
    route("/messages/ack", POST=ack),
    route("/messages/handle", GET=handle),
    route("/messages/{request_id}/reply", POST=reply),
]

__all__ = ["ROUTES", "message_event"]
