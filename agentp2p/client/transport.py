"""httpx settings and error translation shared by the async and sync clients."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx

from agentp2p.client.calls import StreamEvent
from agentp2p.client.discovery import Endpoint
from agentp2p.client.errors import ClientError, DaemonNotRunning, StreamClosed
from agentp2p.client.sse import Event

DEFAULT_TIMEOUT = 30.0  # DHT queries and dials take up to the node's own 10 s timeouts


def client_kwargs(endpoint: Endpoint, timeout: float) -> dict[str, Any]:
    return {
        "base_url": endpoint.address.base_url,
        "headers": {"Authorization": f"Bearer {endpoint.token}"},
        "timeout": timeout,
        # A proxy from the environment must never see the token or stand
        # between us and a loopback daemon.
        "trust_env": False,
    }


def stream_timeout(timeout: float) -> httpx.Timeout:
    """Event streams wait indefinitely between events (the daemon sends keepalives)."""
    return httpx.Timeout(timeout, read=None)


@contextlib.contextmanager
def translate_errors(endpoint: Endpoint, *, streaming: bool = False) -> Iterator[None]:
    """httpx's transport errors as the client's own, naming the daemon address."""
    where = endpoint.address
    try:
        yield
    except httpx.ConnectError as exc:
        raise DaemonNotRunning(
            f"no agentp2p daemon answers at {where} ({exc or 'connection refused'}); is `agentp2p daemon` running?"
        ) from None
    except httpx.TimeoutException:
        raise ClientError(f"the daemon at {where} did not answer in time") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if streaming:
            raise StreamClosed(f"the daemon at {where} closed the event stream ({exc})") from None
        raise ClientError(f"the connection to the daemon at {where} failed: {exc}") from None
    except httpx.TransportError as exc:
        raise ClientError(f"the connection to the daemon at {where} failed: {exc}") from None


def stream_event(raw: Event) -> StreamEvent:
    try:
        data = json.loads(raw.data) if raw.data else {}
    except ValueError:
        raise ClientError(f"malformed event from the daemon: {raw.data[:100]!r}") from None
    if not isinstance(data, dict):
        raise ClientError(f"malformed event from the daemon: {raw.data[:100]!r}")
    return StreamEvent(raw.event, data, raw.id)
