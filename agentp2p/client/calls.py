"""Each API operation once: the request to make and how to read the answer.

The async and sync clients are thin drivers over these descriptions, so the
two cannot drift apart, and a new endpoint (messages, members, records) is
one function here plus a one-line method in each client.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from agentp2p.client.errors import ApiError, ClientError, NotFound, TokenError
from agentp2p.client.types import Message, NodeInfo, Peer, PeerAddrs, encode_payload

T = TypeVar("T")

PREFIX = "/v1"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    none_on_404: bool = False  # "not found" is an answer (dht_get, find_peer), not an error


def _peer_path(peer_id: str, suffix: str = "") -> str:
    return f"{PREFIX}/peers/{quote(peer_id, safe='')}{suffix}"


def node() -> Call[NodeInfo]:
    return Call("GET", f"{PREFIX}/node", NodeInfo.from_json)


def stats() -> Call[dict[str, Any]]:
    return Call("GET", f"{PREFIX}/node/stats", dict)


def peers() -> Call[list[Peer]]:
    return Call("GET", f"{PREFIX}/peers", lambda d: [Peer.from_json(p) for p in d["peers"]])


def peer(peer_id: str) -> Call[Peer]:
    return Call("GET", _peer_path(peer_id), Peer.from_json)


def connect(addr: str) -> Call[str]:
    return Call("POST", f"{PREFIX}/peers", lambda d: str(d["peer_id"]), json={"addr": addr})


def disconnect(peer_id: str) -> Call[None]:
    return Call("DELETE", _peer_path(peer_id), lambda d: None)


def ping(peer_id: str) -> Call[float]:
    return Call("POST", _peer_path(peer_id, "/ping"), lambda d: float(d["rtt_ms"]) / 1000.0)


def publish(topic: str, data: bytes | str) -> Call[int]:
    body = {"topic": topic, **encode_payload(data, "data", "data_b64")}
    return Call("POST", f"{PREFIX}/pubsub/publish", lambda d: int(d["size"]), json=body)


def topics() -> Call[dict[str, list[str]]]:
    return Call("GET", f"{PREFIX}/pubsub/topics", lambda d: {t["topic"]: list(t["peers"]) for t in d["topics"]})


def topic_peers(topic: str) -> Call[list[str]]:
    return Call("GET", f"{PREFIX}/pubsub/peers", lambda d: list(d["peers"]), params={"topic": topic})


def dht_get(key: str) -> Call[bytes | None]:
    return Call("GET", f"{PREFIX}/dht/value", lambda d: base64.b64decode(d["value_b64"]), params={"key": key}, none_on_404=True)


def dht_put(key: str, value: bytes | str) -> Call[None]:
    return Call("PUT", f"{PREFIX}/dht/value", lambda d: None, json={"key": key, **encode_payload(value, "value", "value_b64")})


def provide(key: str) -> Call[None]:
    return Call("POST", f"{PREFIX}/dht/providers", lambda d: None, json={"key": key})


def find_providers(key: str, count: int = 20) -> Call[list[PeerAddrs]]:
    return Call(
        "GET",
        f"{PREFIX}/dht/providers",
        lambda d: [PeerAddrs.from_json(p) for p in d["providers"]],
        params={"key": key, "count": count},
    )


def find_peer(peer_id: str) -> Call[PeerAddrs | None]:
    return Call("GET", f"{PREFIX}/dht/peers/{quote(peer_id, safe='')}", PeerAddrs.from_json, none_on_404=True)


# -- answers ------------------------------------------------------------------------


def error_from(status: int, body: bytes, token_source: str) -> ClientError:
    """The exception for a non-2xx answer."""
    try:
        doc = json.loads(body)
        code, message = str(doc["error"]), str(doc["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", body.decode("utf-8", "replace")[:200] or f"HTTP {status}"
    if status == 401:
        return TokenError(f"the daemon refused the API token from {token_source}: {message}")
    if status == 404:
        return NotFound(status, code, message)
    return ApiError(status, code, message)


def finish(call: Call[T], status: int, body: bytes, token_source: str) -> T:
    if 200 <= status < 300:
        try:
            doc = json.loads(body) if body else {}
            return call.decode(doc)
        except (ValueError, KeyError, TypeError) as exc:
            raise ClientError(f"unexpected answer from the daemon to {call.method} {call.path}: {exc!r}") from None
    if status == 404 and call.none_on_404:
        try:
            if json.loads(body).get("error") == "not_found":
                return None  # type: ignore[return-value]
        except (ValueError, AttributeError):
            pass
    raise error_from(status, body, token_source)


# -- event streams ------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    """One event from an API event stream, its data decoded from JSON."""

    event: str
    data: dict[str, Any]
    id: str | None = None


def subscribe_path(topic: str) -> tuple[str, dict[str, Any]]:
    return f"{PREFIX}/pubsub/subscribe", {"topic": topic}


def message_from(event: StreamEvent) -> Message:
    return Message.from_json(event.data)
