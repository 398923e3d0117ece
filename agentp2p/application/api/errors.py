"""Errors as JSON: every non-2xx answer is ``{"error": code, "message": why}``.

A ``504 delivery_timeout`` also says ``"stored": true|false``: whether the
peer's durable inbox had the message when the deadline passed (then it is
not lost, and sending it again would deliver it twice).

Handlers raise :class:`ApiError` (or let a node error through); the table in
:data:`NODE_ERRORS` maps node failures to statuses. A 5xx here means the
network failed the request (a peer unreachable, a DHT query timing out), not
that the daemon did: 500 is reserved for our bugs, and even those end the one
request, never the daemon.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.errors import AddressError, DialError, Forbidden, NotRunningError, PubSubError
from agentp2p.messaging.errors import DeliveryError, DeliveryTimeout, InboxFull, RemoteHandlerError, RequestTimeout
from agentp2p.protocol.dht import DHTError

log = logging.getLogger("agentp2p.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


def service_unavailable(what: str, hint: str) -> ApiError:
    """503 for a feature whose node service is not attached to this daemon."""
    return ApiError(503, "service_unavailable", f"{what} is not enabled on this daemon; {hint}")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


# (exception type, status, code) — first match wins, so subclasses go first.
NODE_ERRORS: list[tuple[type[BaseException], int, str]] = [
    (AddressError, 400, "bad_request"),
    # A policy refuses: ours (deny or allow list, penalty box, authorization
    # rules) or the peer's (its rules refused our message). Not a network failure.
    (Forbidden, 403, "forbidden"),
    (DialError, 502, "peer_unreachable"),
    (DHTError, 502, "dht_failed"),
    (PubSubError, 503, "pubsub_unavailable"),
    # Messaging: the peer did not take the message (or answer) in time; a
    # request's handler raised at the peer; anything else that kept it from
    # being delivered (node stopping, cannot seal to the peer's key).
    (RequestTimeout, 504, "request_timeout"),
    (DeliveryTimeout, 504, "delivery_timeout"),
    (RemoteHandlerError, 502, "remote_handler_error"),
    # The peer's durable inbox is full: nothing was stored there, try later.
    (InboxFull, 507, "inbox_full"),
    (DeliveryError, 502, "delivery_failed"),
    (NotRunningError, 503, "not_running"),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    409: "conflict",
    429: "too_many_requests",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if exc.status_code != 404 else f"no such endpoint: {request.method} {request.url.path}"
    return error_response(exc.status_code, code, str(message), headers=exc.headers)


def _node_error_handler(status: int, code: str) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.info("%s %s failed: %s", request.method, request.url.path, exc)
        if isinstance(exc, DeliveryTimeout) and not isinstance(exc, RequestTimeout):
            # A caller deciding whether to send again needs this as data, not prose.
            return error_response(status, code, str(exc), stored=bool(exc.stored))
        return error_response(status, code, str(exc))

    return handler


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs and re-raises after sending this; hypercorn contains it.
    log.error("internal error in %s %s: %r", request.method, request.url.path, exc)
    return error_response(500, "internal_error", "internal error; see the daemon's log")


def exception_handlers() -> dict[Any, Any]:
    handlers: dict[Any, Any] = {
        ApiError: _api_error,
        HTTPException: _http_exception,
        Exception: _internal_error,
    }
    for exc_type, status, code in NODE_ERRORS:
        handlers[exc_type] = _node_error_handler(status, code)
    return handlers
